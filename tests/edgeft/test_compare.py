"""`edgeft compare`: same split and budget, reproducible runs, resumable, reports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from edgeft.errors import UserError
from edgeft.train.compare import CompareOptions, recommendation, run_compare
from edgeft.train.finetune import FinetuneOptions, finetune
from edgeft.train.sweep import sweep_finding
from tests.conftest import MOBILENET_V2_WEIGHTS, make_color_dataset, needs_assets, run_cli


def _base(data, tmp_path, **kw):
    return FinetuneOptions(
        data=data,
        arch="mobilenet_v2",
        out=tmp_path / "unused",
        epochs=2,
        size=(32, 32),
        batch_size=8,
        quiet=True,
        weights=str(MOBILENET_V2_WEIGHTS),
        **kw,
    )


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_same_seed_same_split_and_metrics(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=8, size=32)
    runs = []
    for i, seed in enumerate([3, 3, 4]):
        opts = _base(data, tmp_path, seed=seed, split_seed=7, strategy="full")
        opts.out = tmp_path / f"b{i}"
        runs.append(finetune(opts))
    a, b, c = runs
    assert (
        a.training["data"]["fingerprint"]
        == b.training["data"]["fingerprint"]
        == c.training["data"]["fingerprint"]
    )
    ref_a, ref_b = np.load(a.bundle / "reference.npz"), np.load(b.bundle / "reference.npz")
    assert np.abs(ref_a["probs"] - ref_b["probs"]).max() <= 1e-6
    assert abs(a.metrics["accuracy"] - b.metrics["accuracy"]) <= 1e-6
    for key in ("train_loss", "valid_loss"):
        assert [h[key] for h in a.training["history"]] == pytest.approx(
            [h[key] for h in b.training["history"]], abs=1e-6
        )
    wa, wc = torch.load(a.bundle / "weights.pt"), torch.load(c.bundle / "weights.pt")
    assert any(
        not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point()
    )  # other seed, other run


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_compare_table_reports_and_resume(tmp_path, capsys):
    data = make_color_dataset(tmp_path / "d", n_per_class=8, size=32)
    out = tmp_path / "cmp"
    co = CompareOptions(
        base=_base(data, tmp_path), strategies=["scratch", "head", "discriminative"], repeats=2
    )
    s = run_compare(co, out)
    assert [r["strategy"] for r in s["strategies"]] == ["scratch", "head", "discriminative"]
    assert all(r["repeats"] == 2 for r in s["strategies"])
    assert len({r["split_fingerprint"] for r in s["runs"]}) == 1
    head = next(r for r in s["strategies"] if r["strategy"] == "head")
    assert head["trainable_params"] < head["total_params"]
    disc = [r for r in s["runs"] if r["group"] == "discriminative"]
    assert all(
        len(r["curve"]) == 2 for r in disc
    )  # 1 frozen + 1 unfrozen = the same 2-epoch budget
    for f in ("compare.json", "compare.md", "compare.png"):
        assert (out / f).is_file()
    assert "Recommendation" in (out / "compare.md").read_text()
    # a second run reuses everything
    s2 = run_compare(co, out)
    assert s2["reused_runs"] == 6
    # training time counts every run; the resumed invocation itself trained nothing
    assert s2["train_seconds_total"] == s["train_seconds_total"] > s2["wall_seconds"]
    assert "6 runs (6 reused from an earlier invocation)" in (out / "compare.md").read_text()
    assert [r["accuracy"] for r in s2["runs"]] == [r["accuracy"] for r in s["runs"]]
    # other options in the same folder are refused
    co_other = CompareOptions(base=_base(data, tmp_path, lr=1e-2), strategies=["head"], repeats=1)
    with pytest.raises(UserError, match="made with other options"):
        run_compare(co_other, out)


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_killed_compare_finishes_only_what_is_missing(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=8, size=32)
    out = tmp_path / "cmp"
    args = [
        sys.executable,
        "-m",
        "edgeft",
        "compare",
        "--data",
        str(data),
        "--arch",
        "mobilenet_v2",
        "--out",
        str(out),
        "--strategies",
        "head,full,scratch",
        "--epochs",
        "2",
        "--size",
        "32",
        "--batch-size",
        "8",
        "--weights",
        str(MOBILENET_V2_WEIGHTS),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "runs" / "head-r0" / "result.json"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert "head-r0" in done_before and len(done_before) < 3
    p = run_cli(*args[3:])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "head-r0: reused" in p.stdout
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert set(after) == {"head-r0", "full-r0", "scratch-r0"}
    assert all(after[k] == v for k, v in done_before.items())  # finished runs untouched
    summary = json.loads((out / "compare.json").read_text())
    assert summary["reused_runs"] == len(done_before)


def test_recommendation_is_grounded_in_the_numbers():
    rows = [
        {
            "strategy": "scratch",
            "accuracy_mean": 0.40,
            "accuracy_std": 0.01,
            "train_seconds_mean": 100,
            "repeats": 2,
        },
        {
            "strategy": "head",
            "accuracy_mean": 0.88,
            "accuracy_std": 0.005,
            "train_seconds_mean": 30,
            "repeats": 2,
        },
        {
            "strategy": "full",
            "accuracy_mean": 0.921,
            "accuracy_std": 0.004,
            "train_seconds_mean": 100,
            "repeats": 2,
        },
    ]
    text = recommendation(rows)
    assert text.startswith("full fine-tune is best here (92.1%) by 4.1 points over head-only")
    assert "scratch is 52.1 points behind" in text
    assert "head-only trains 3.3x faster at 4.1 points less" in text
    rows[1]["accuracy_mean"] = 0.919
    assert "not a clear winner" in recommendation(rows)


def test_bad_compare_options(tmp_path):
    data = make_color_dataset(tmp_path / "d")
    for args, msg in (
        (["--strategies", "head,head"], "twice"),
        (["--repeats", "0"], "--repeats"),
        (["--strategies", "warp"], "unknown --strategy"),
        (["--epochs", "1", "--strategies", "discriminative"], "at least 2"),
    ):
        p = run_cli("compare", "--data", data, "--arch", "resnet18", "--out", tmp_path / "o", *args)
        assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_freeze_sweep_runs_both_variants_per_k(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=6, size=32)
    base = _base(data, tmp_path)
    base.epochs = 1
    s = run_compare(CompareOptions(base=base, strategies=[], sweep_freeze=True), tmp_path / "sw")
    names = sorted(r["name"] for r in s["runs"])
    assert len(names) == 9 and "sweep-k0-scratch-r0" in names and "sweep-k4-frozen-r0" in names
    v = s["sweep"]["variants"]
    assert [p["k"] for p in v["frozen"]] == [0, 1, 2, 3, 4] == [p["k"] for p in v["fine-tuned"]]
    assert v["frozen"][0] == v["fine-tuned"][0]  # K = 0 is one scratch run serving both curves
    k4 = next(r for r in s["runs"] if r["name"] == "sweep-k4-frozen-r0")
    k1 = next(r for r in s["runs"] if r["name"] == "sweep-k1-frozen-r0")
    assert k4["trainable_params"] < k1["trainable_params"]  # more frozen, fewer trainable
    assert (tmp_path / "sw" / "sweep.png").is_file()
    md = (tmp_path / "sw" / "compare.md").read_text()
    assert "**Finding:**" in md and "| strategy |" not in md and "compare.png" not in md
    assert s["recommendation"] is None  # no strategies compared: nothing to recommend


def test_sweep_finding_is_grounded_in_the_numbers():
    def row(k, acc):
        return {"k": k, "accuracy_mean": acc, "accuracy_std": 0.0, "n": 1}

    frozen = [row(0, 0.44), row(1, 0.52), row(2, 0.67), row(3, 0.88), row(4, 0.82)]
    tuned = [row(0, 0.44), row(1, 0.58), row(2, 0.72), row(3, 0.90), row(4, 0.935)]
    text = sweep_finding({"groups": 4, "variants": {"frozen": frozen, "fine-tuned": tuned}})
    assert "fine-tuning beats freezing at every K >= 1, by 2.0 to 11.5 points (most at K=4)" in text
    assert "frozen features peak at K=3 (88.0%)" in text
    assert "keeps K=4 pretrained groups and fine-tunes (93.5%)" in text
    assert "from scratch (K=0): 44.0%" in text
    tuned[3] = row(3, 0.85)  # freezing wins at K=3
    text = sweep_finding({"groups": 4, "variants": {"frozen": frozen, "fine-tuned": tuned}})
    assert "fine-tuning beats freezing at K=[1, 2, 4], not at K=[3]" in text


def test_auto_epochs_are_refused_and_auto_frozen_epochs_mean_one(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=32)
    base = _base(data, tmp_path)
    base.epochs = "auto"
    with pytest.raises(UserError, match="give --epochs N, not auto"):
        CompareOptions(base=base).validate()
    co = CompareOptions(base=_base(data, tmp_path, freeze_epochs="auto"))
    co.validate()
    assert co.base.freeze_epochs == 1


def test_every_strategy_runs_as_named_without_the_fallback(tmp_path):
    # The fallback could hand discriminative's run back as its head-only probe: a
    # comparison of strategies plans each run with it off, and keeps the frozen phase.
    from edgeft.train.compare import plan_runs

    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=32)
    co = CompareOptions(base=_base(data, tmp_path), strategies=["head", "discriminative"])
    co.validate()
    runs = plan_runs(co, tmp_path / "out")
    assert [r.opts.strategy for r in runs] == ["head", "discriminative"]
    assert all(r.opts.fallback is False for r in runs)
    assert all(r.opts.frozen_phase == co.base.frozen_phase for r in runs)
