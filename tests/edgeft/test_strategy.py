"""Each strategy does what it claims, read from the weights and the optimizer."""

from __future__ import annotations

import pytest
import torch

from edgeft.errors import UserError
from edgeft.models.network import build_model
from edgeft.train.finetune import FinetuneOptions, finetune
from edgeft.train.strategy import parse_strategy
from tests.conftest import MOBILENET_V2_WEIGHTS, make_color_dataset, needs_assets

ARCH = "mobilenet_v2"


def _initial_and_final(tmp_path, strategy, **kw):
    """Fine-tune on tiny data and return (weights at start, weights at end, record)."""
    data = make_color_dataset(tmp_path / "data", n_per_class=6, size=32)
    opts = FinetuneOptions(
        data=data,
        arch=ARCH,
        out=tmp_path / "b",
        strategy=strategy,
        epochs=1,
        freeze_epochs=1,
        size=(32, 32),
        batch_size=8,
        quiet=True,
        weights=str(MOBILENET_V2_WEIGHTS),
        **kw,
    )
    from edgeft.models.weights import WeightsSource, pretrained_full_model

    torch.manual_seed(0)
    full = pretrained_full_model(ARCH, WeightsSource("file", path=str(MOBILENET_V2_WEIGHTS)))
    start = {k: v.clone() for k, v in build_model(ARCH, 3, full=full)[0].state_dict().items()}
    res = finetune(opts)
    end = torch.load(res.bundle / "weights.pt", weights_only=True)
    return start, end, res.training


def _body_group_keys(k):
    from edgeft.models.archs import get_arch

    groups = get_arch(ARCH).groups
    idx = int(k.split(".")[0])
    return next(g for g, (a, b) in enumerate(groups) if a <= idx < b)


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_head_leaves_every_backbone_tensor_bit_identical(tmp_path):
    start, end, rec = _initial_and_final(tmp_path, "head")
    for k, v in start.items():
        assert torch.equal(end["0." + k], v), (
            f"backbone {k} changed"
        )  # parameters and BN statistics
    assert rec["phases"][0]["trainable_groups"] == [4]
    head_params = sum(p.numel() for p in build_model(ARCH, 3)[1].parameters())
    assert rec["params"]["trainable"] == head_params


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_discriminative_gives_earlier_groups_smaller_lrs(tmp_path):
    _, _, rec = _initial_and_final(tmp_path, "discriminative", lr=1e-3, lr_mult=100)
    frozen, unfrozen = rec["phases"]
    assert frozen["name"] == "frozen" and frozen["trainable_groups"] == [4]
    lrs = unfrozen["lr_per_group"]  # the one-cycle schedule's peak per group
    assert all(a < b for a, b in zip(lrs, lrs[1:], strict=False)), lrs
    assert lrs[-1] / lrs[0] == pytest.approx(100, rel=1e-3)
    assert lrs[-1] == pytest.approx(1e-3 / 2, rel=1e-3)  # fastai halves base_lr after freezing
    seen = unfrozen["lr_max_seen"]  # what the optimizer's param groups actually held
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False)), seen
    assert seen[-1] / seen[0] == pytest.approx(100, rel=1e-3)


@needs_assets(MOBILENET_V2_WEIGHTS)
@pytest.mark.parametrize("scores,kept", [((0.9, 0.5), "probe"), ((0.5, 0.9), "finetuned")])
def test_the_fallback_keeps_the_probe_when_fine_tuning_scores_lower(
    tmp_path, monkeypatch, scores, kept
):
    # Real training; only the two validation scores the decision reads are fixed, so that
    # each branch runs on tiny data whatever it learns.
    import edgeft.train.strategy as strategy_mod

    seq = iter(scores)
    monkeypatch.setattr(strategy_mod, "_last_accuracy", lambda learn: next(seq))
    start, end, rec = _initial_and_final(
        tmp_path, "discriminative", frozen_phase="probe", fallback=True
    )
    assert rec["fallback"] == {
        "probe_accuracy": scores[0],
        "finetuned_accuracy": scores[1],
        "kept": kept,
    }
    assert [p["name"] for p in rec["phases"]] == ["frozen", "unfrozen"]
    body_same = all(torch.equal(end["0." + k], v) for k, v in start.items())
    # The probe is a fixed feature extractor (BatchNorm statistics too): keeping it keeps
    # the pretrained body bit for bit; keeping the fine-tuned model does not.
    assert body_same == (kept == "probe")


@needs_assets(MOBILENET_V2_WEIGHTS)
@pytest.mark.parametrize("k", [1, 3])
def test_freeze_k_leaves_exactly_the_first_k_groups_unchanged(tmp_path, k):
    start, end, rec = _initial_and_final(tmp_path, f"freeze:{k}")
    changed = {g: False for g in range(4)}
    for key, v in start.items():
        if v.is_floating_point() and not torch.equal(end["0." + key], v):
            changed[_body_group_keys(key)] = True
    assert [changed[g] for g in range(4)] == [False] * k + [True] * (4 - k)
    assert rec["phases"][0]["trainable_groups"] == list(range(k, 5))


def test_full_trains_every_group_at_one_lr(tmp_path):
    data = make_color_dataset(tmp_path / "data", n_per_class=6, size=32)
    res = finetune(
        FinetuneOptions(
            data=data,
            arch="resnet18",
            out=tmp_path / "b",
            strategy="full",
            epochs=1,
            size=(32, 32),
            batch_size=8,
            quiet=True,
            pretrained=False,
            lr=1e-3,
        )
    )
    (phase,) = res.training["phases"]
    assert phase["trainable_groups"] == [0, 1, 2, 3, 4]
    assert len(set(phase["lr_per_group"])) == 1 and phase["lr_per_group"][0] == pytest.approx(1e-3)


@pytest.mark.parametrize("bad", ["freeze:5", "freeze:-1", "half", "freeze:x"])
def test_bad_strategy(bad):
    with pytest.raises(UserError, match="strategy"):
        parse_strategy(bad)


@pytest.mark.parametrize(
    "strategy,method",
    [("full", "fastai lr_find"), ("discriminative", "head over cached body features")],
)
def test_lr_auto_runs_lr_find_and_records_the_choice(tmp_path, strategy, method):
    data = make_color_dataset(tmp_path / "data", n_per_class=12, size=32)
    res = finetune(
        FinetuneOptions(
            data=data,
            arch="resnet18",
            out=tmp_path / "b",
            strategy=strategy,
            epochs=1,
            freeze_epochs=1,
            size=(32, 32),
            batch_size=8,
            quiet=True,
            pretrained=False,
            lr="auto",
        )
    )
    rec = res.training
    assert rec["lr_source"] == "lr_find" and rec["lr"] == rec["lr_find"]["valley"] > 0
    assert rec["lr_find"]["method"] == method
    if strategy == "discriminative":  # the range test ran on the head, over cached features
        assert 0 < rec["lr_find"]["images"] <= 512 and rec["lr_find"]["steps"] == 100
    # the first phase trains the head (the last group) at the LR lr_find chose
    assert rec["phases"][0]["lr_per_group"][-1] == pytest.approx(rec["lr"], rel=1e-3)
