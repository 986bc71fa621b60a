"""The auto recipe: batch size, epochs and frozen epochs from the training set, each
overridable, every choice recorded in the bundle and printed."""

from __future__ import annotations

import json

import pytest

from edgeft.errors import UserError
from edgeft.train import recipe
from edgeft.train.recipe import AUTO, choose, parse_auto_int
from tests.conftest import make_color_dataset, run_cli


def _auto(n, size=(224, 224), frozen=True):
    return choose(AUTO, AUTO, AUTO, n, 2, size, frozen)


def test_small_sets_get_small_batches_and_more_epochs():
    # the chest X-ray 100 + 100 case: a batch of 64 gave 3 steps an epoch and underfit
    r = _auto(200)
    assert r.batch_size.value == 32 and "the smallest" in r.batch_size.why
    spe = recipe.steps_per_epoch(200, 32)
    assert spe == 6
    total = r.freeze_epochs.value + r.epochs.value
    assert total == recipe.MAX_EPOCHS  # 300 steps would need 25 epochs: capped
    assert r.freeze_epochs.value == recipe.MAX_FROZEN  # 40 head-only steps need 7: capped


def test_eurosat_200_gets_batch_32():
    r = _auto(1600, size=(128, 128))
    assert r.batch_size.value == 32  # 64 would leave 25 steps an epoch, under 40
    assert "the smallest" not in r.batch_size.why
    spe = 1600 // 32
    total = r.freeze_epochs.value + r.epochs.value
    assert total * spe >= recipe.TARGET_STEPS > (total - 1) * spe
    assert r.freeze_epochs.value == 1


def test_large_sets_get_the_largest_batch_and_the_fewest_epochs():
    r = _auto(50_000)
    assert r.batch_size.value == 64
    assert r.freeze_epochs.value + r.epochs.value == recipe.MIN_EPOCHS
    assert r.freeze_epochs.value == 1


def test_large_inputs_cap_the_batch_by_memory():
    r = _auto(50_000, size=(448, 448))
    assert r.batch_size.value == 16  # 64 x 224^2 pixels at most
    assert "memory" in r.batch_size.why


def test_given_values_win_and_the_others_follow_them():
    r = choose(64, AUTO, 2, 200, 2, (224, 224), True)
    assert (r.batch_size.value, r.batch_size.source) == (64, "given")
    assert (r.freeze_epochs.value, r.freeze_epochs.source) == (2, "given")
    assert r.epochs.source == "auto"
    # 3 steps an epoch at batch 64: the epochs are counted from the given batch
    assert r.freeze_epochs.value + r.epochs.value == recipe.MAX_EPOCHS


def test_no_frozen_phase_outside_discriminative():
    r = _auto(1600, frozen=False)
    assert r.freeze_epochs.value == 0
    assert r.epochs.value * (1600 // r.batch_size.value) >= recipe.TARGET_STEPS


def test_tiny_sets_keep_at_least_two_per_batch():
    r = _auto(5)
    assert 2 <= r.batch_size.value <= 5
    assert r.epochs.value >= 1


def test_record_and_line_say_where_each_value_came_from():
    r = choose(32, AUTO, AUTO, 1600, 10, (128, 128), True)
    rec = r.record()
    assert rec["batch_size"]["source"] == "given"
    assert rec["epochs"]["source"] == "auto" and rec["epochs"]["why"]
    assert rec["steps_per_epoch"] == 50 and rec["n_train"] == 1600
    line = r.line(True)
    assert line.startswith("recipe: batch 32 (given)") and "frozen (auto)" in line


@pytest.mark.parametrize("value", ["many", "1.5", "", "-3"])
def test_parse_auto_int_refuses_garbage_with_one_line(value):
    with pytest.raises(UserError, match="--epochs must be"):
        parse_auto_int(value, "epochs", 1)


def test_parse_auto_int_accepts_auto_and_integers():
    assert parse_auto_int("AUTO", "epochs", 1) == AUTO
    assert parse_auto_int(" 7 ", "epochs", 1) == 7
    assert parse_auto_int(0, "freeze-epochs", 0) == 0
    with pytest.raises(UserError):
        parse_auto_int(True, "epochs", 1)


def test_finetune_prints_and_records_the_recipe(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=6, size=32)
    p = run_cli(
        "finetune",
        "--data",
        data,
        "--arch",
        "mobilenet_v2",
        "--out",
        tmp_path / "b",
        "--no-pretrained",
        "--size",
        "32",
        "--epochs",
        "1",
        "--strategy",
        "full",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "recipe: batch " in p.stdout and "(auto)" in p.stdout
    training = json.loads((tmp_path / "b" / "bundle.json").read_text())["training"]
    rec = training["recipe"]
    assert rec["epochs"] == {"value": 1, "source": "given", "why": "--epochs"}
    assert rec["batch_size"]["source"] == "auto"
    assert training["batch_size"] == rec["batch_size"]["value"]
