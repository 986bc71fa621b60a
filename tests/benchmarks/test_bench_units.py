"""Parts of `edgeft bench`: timing loop, statistics, tolerances, data scan, export agreement,
environment capture, Jetson power sampling, CUDA (on a GPU machine)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import latency
from benchmarks.bench import BenchOptions, run_bench
from benchmarks.ladder import (
    backend_tolerance,
    export_agreement,
    parse_tolerances,
)
from edgeft.data import labelled_folder
from edgeft.errors import UserError
from edgeft.options import parse_int_list, parse_name_list
from edgeft.platform.env import capture
from tests.bench_support import LENIENT_INT8, tiny_bench_bundle
from tests.benchmarks.test_tegrastats import ORIN_NX_JP6
from tests.conftest import MOBILENET_V2_WEIGHTS, make_color_dataset, run_cli
from tests.edgeft.test_jetson_probe import AGX_ORIN_MODEL, AGX_ORIN_R39_RELEASE

# -- timing ------------------------------------------------------------------------------


class _Recorder:
    """Stands in for a CUDA runner (none here): records infer and synchronize calls."""

    def __init__(self, sleep_s=0.0):
        self.log, self.sleep_s = [], sleep_s

    def infer(self, x):
        self.log.append("infer")
        time.sleep(self.sleep_s)
        return x

    def synchronize(self):
        self.log.append("sync")


def test_time_calls_synchronises_around_every_timed_call():
    r = _Recorder()
    samples = latency.time_calls(lambda: r.infer(None), warmup=2, runs=3, sync=r.synchronize)
    assert len(samples) == 3
    # warm-up untimed, a sync to drain it, then sync / infer / sync for each timed call
    assert r.log == ["infer", "infer", "sync"] + ["sync", "infer", "sync"] * 3


def test_time_calls_for_seconds_and_the_statistics():
    r = _Recorder(sleep_s=0.01)
    samples = latency.time_calls(lambda: r.infer(None), warmup=0, seconds=0.1)
    assert latency.MIN_RUNS_FOR_SECONDS <= len(samples) <= 12
    assert all(s >= 9.5 for s in samples)  # sleep(0.01) takes at least 10 ms
    st = latency.summarize([1.0, 2.0, 3.0, 4.0, 10.0], batch_size=8)
    assert st["runs"] == 5 and st["mean_ms"] == 4.0 and st["p50_ms"] == 3.0
    assert st["p90_ms"] == pytest.approx(7.6) and st["p99_ms"] == pytest.approx(9.76)
    assert st["std_ms"] == pytest.approx(np.std([1, 2, 3, 4, 10], ddof=1))
    assert st["throughput_ips"] == pytest.approx(2000.0)
    assert st["samples_ms"] == [1.0, 2.0, 3.0, 4.0, 10.0]
    with pytest.raises(ValueError):
        latency.time_calls(lambda: None, warmup=0)


def test_model_batch_repeats_real_images_and_folds_for_folded_graphs():
    from edgeft.preprocess import Preprocessing

    pp = Preprocessing(size=(4, 4), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    b = latency.model_batch(x, 5, True, pp)
    assert b.shape == (5, 3, 4, 4) and np.array_equal(b[2], x[0]) and np.array_equal(b[3], x[1])
    assert np.allclose(latency.model_batch(x, 1, False, pp), x[:1] * 0.25 + 0.5)


# -- options, tolerances, data --------------------------------------------------------------


def test_parse_lists():
    assert parse_int_list("1,8, 32") == (1, 8, 32)
    assert parse_name_list(["torch,onnx", "onnx-int8", "onnx"]) == ["torch", "onnx", "onnx-int8"]
    assert parse_name_list(None) is None
    with pytest.raises(UserError, match="comma-separated integers"):
        parse_int_list("1,eight")


def test_tolerances_defaults_and_overrides():
    assert backend_tolerance("onnx", "fp32").max_scaled_diff == 1e-4
    assert backend_tolerance("torch-fp16", "fp16-autocast").min_agreement == 0.99
    over = parse_tolerances(
        ["int8.max_accuracy_drop=2", "onnx-int8.agreement=0.9", "fp32.max_scaled_diff=none"],
        ["onnx", "onnx-int8"],
    )
    t = backend_tolerance("onnx-int8", "int8", over)
    assert (t.max_accuracy_drop, t.min_agreement) == (2.0, 0.9)  # backend beats precision
    assert backend_tolerance("onnx", "fp32", over).max_scaled_diff is None
    # the former field name is read as the scaled bound
    old = parse_tolerances(["fp32.max_abs_diff=1e-3"], ["onnx"])
    assert backend_tolerance("onnx", "fp32", old).max_scaled_diff == 1e-3
    # The tolerance an artifact was exported under sits between the defaults and --tolerance.
    recorded = {"min_agreement": 0.9, "max_accuracy_drop": 1.5, "max_scaled_diff": None}
    t = backend_tolerance("onnx-int8", "int8", {}, recorded)
    assert (t.min_agreement, t.max_accuracy_drop) == (0.9, 1.5)
    t = backend_tolerance("onnx-int8", "int8", {"int8": {"max_accuracy_drop": 3.0}}, recorded)
    assert (t.min_agreement, t.max_accuracy_drop) == (0.9, 3.0)
    with pytest.raises(UserError, match="not a number"):
        parse_tolerances(["int8.drop=lots"])


def test_export_agreement():
    fig = {"n": 400, "accuracy": 0.9, "agreement": 0.97, "max_abs_diff": 2.0}
    same = export_agreement(
        fig, {"n": 400, "accuracy": 0.9, "agreement": 0.97, "max_abs_diff": 2.1}
    )
    assert same["comparable"] and same["agrees"]
    off = export_agreement(
        fig, {"n": 400, "accuracy": 0.85, "agreement": 0.97, "max_abs_diff": 2.0}
    )
    assert off["agrees"] is False
    other = export_agreement(fig, {"n": 100, "accuracy": 0.9})
    assert other["comparable"] is False and "different image sets" in other["note"]
    assert export_agreement(fig, None) is None


def test_labelled_folder_uses_a_valid_subfolder(tmp_path):
    make_color_dataset(tmp_path / "d" / "valid", n_per_class=2, classes=("red", "blue", "yellow"))
    make_color_dataset(tmp_path / "d" / "train", n_per_class=3)
    s = labelled_folder(tmp_path / "d", ["blue", "green", "red"])
    assert s.source == str(tmp_path / "d" / "valid")
    assert sorted({lb for _, lb in s.samples}) == ["blue", "red"] and len(s.samples) == 4
    assert s.unknown == {"yellow": 2}


# -- environment ----------------------------------------------------------------------------


def test_environment_capture_here():
    env = capture("cpu", threads=2)
    assert env["cpu"]["logical_cores"] == os.cpu_count() and env["cpu"]["model"]
    assert env["ram"]["total_gib"] > 0.5
    assert "CPUExecutionProvider" in env["onnxruntime"]["providers"]
    assert env["threads"] == {"requested": 2, "onnxruntime": 2, "torch": 2}
    assert env["provenance"]["edgeft"]
    if env["gpu"]["gpu"] is None:
        assert "no CUDA GPU" in env["gpu"]["reason"]
    assert env["jetson"] is None


# -- Jetson ---------------------------------------------------------------------------------


def _fake_jetson(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(AGX_ORIN_R39_RELEASE)
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_text(AGX_ORIN_MODEL + "\x00")
    (tmp_path / "lines.txt").write_text(ORIN_NX_JP6 + "\n")
    script = tmp_path / "tegrastats"
    script.write_text(f'#!/bin/sh\nwhile true; do cat "{tmp_path}/lines.txt"; sleep 0.02; done\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return root, script


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # A GPU machine without fastai: bring a bundle built elsewhere.
    if os.environ.get("EDGEFT_TEST_TINY_BUNDLE"):
        return Path(os.environ["EDGEFT_TEST_TINY_BUNDLE"])
    if not MOBILENET_V2_WEIGHTS.exists():
        pytest.skip("real assets absent (MobileNetV2 weights)")
    return tiny_bench_bundle(tmp_path_factory)


def test_power_is_sampled_during_timed_runs(tiny, tmp_path):
    """tegrastats (a script replaying a recorded Orin NX line) runs through the timing; each
    backend's model-only segments get the samples inside them."""
    from benchmarks.bench import _time_backends
    from edgeft import formats
    from edgeft.bundle import Bundle
    from edgeft.labelled import load_labelled
    from edgeft.parity import bundle_valid_samples

    _, script = _fake_jetson(tmp_path)
    b = Bundle.load(tiny)
    imgs = load_labelled(bundle_valid_samples(b), b.labels, b.preprocessing)
    opts = BenchOptions(
        bundle=tiny,
        batch_sizes=(1,),
        warmup=1,
        seconds=0.6,
        rounds=2,
        e2e=False,
        tegrastats=str(script),
        tegrastats_interval_ms=50,
    )
    targets = [
        latency.Target(n, formats.make_runner(n, b, threads=1), imgs.x, imgs.paths, b.preprocessing)
        for n in ("onnx", "onnx-int8")
    ]
    for t in targets:
        t.runner.activate()
    entries, whole = _time_backends(
        targets, opts, {"throttle_trip_points_c": {"tj": 60.0}}, lambda: None
    )
    assert whole["sample_count"] >= 4 and whole["total"]["rail"] == "VDD_IN"
    for e in entries:
        power = e["power"]
        assert 1 <= power["sample_count"] < whole["sample_count"]  # its own segments only
        # The instantaneous VDD_IN of the recorded line, in watts.
        assert power["total"]["avg"] == pytest.approx(17.946)
        assert power["gpu_load_pct"]["avg"] == 84.0
        assert power["throttling"]["detected"] is True  # tj 65.6 C >= the 60 C limit given
        assert e["e2e"] is None and e["rounds"] == 2 and e["model"]["runs"] >= 6
    from benchmarks.report.markdown import power_rows

    row = power_rows({"latency": entries})[0]
    assert row[:2] == ["onnx", 1] and row[3] == "17.95" and row[5] == "VDD_IN"
    assert row[8].endswith(" 65.6 C") and row[9] == "YES"  # cpu and tj both read 65.562 C


def test_interleaved_rounds_time_every_backend_in_turn():
    a, b = _Recorder(), _Recorder()
    x = np.zeros((2, 3, 4, 4), np.float32)
    from edgeft.preprocess import Preprocessing

    pp = Preprocessing(size=(4, 4), mean=(0, 0, 0), std=(1, 1, 1))
    seen = []
    out = latency.measure(
        [latency.Target("a", a, x, [], pp), latency.Target("b", b, x, [], pp)],
        [2],
        warmup=1,
        runs=5,
        rounds=3,
        e2e=False,
        on_segment=lambda n, bs, kind, t0, t1: seen.append((n, bs, kind)),
    )
    assert [e["model"]["runs"] for e in out] == [5, 5] and latency.split_runs(5, 3) == [2, 2, 1]
    # round 1: a then b; round 2: b then a (the order rotates); round 3: a then b
    assert [n for n, _, _ in seen] == ["a", "b", "b", "a", "a", "b"]
    assert a.log.count("infer") == 1 + 5 and b.log.count("infer") == 1 + 5


def test_jetson_device_is_detected_and_backends_say_why_they_cannot_run(tiny, tmp_path):
    root, script = _fake_jetson(tmp_path)
    # A recorded AGX Orin: detected as a Jetson, but this machine has no CUDA for its backends.
    with pytest.raises(
        UserError, match="no backend can run on --device jetson here: torch: no CUDA device"
    ):
        run_bench(
            BenchOptions(
                bundle=tiny,
                device="jetson",
                backends=["torch", "onnx"],
                jetson_root=str(root),
                tegrastats=str(script),
                out=tmp_path / "o",
                quiet=True,
            )
        )


# -- CUDA (a GPU machine) -------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_torch_fp32_and_fp16(tiny, tmp_path):
    out = tmp_path / "o"
    proc = run_cli(
        "bench",
        tiny,
        "--device",
        "cuda",
        "--backends",
        "torch,torch-fp16,torch-cl,onnx",
        "--batch-sizes",
        "1,8",
        "--runs",
        "20",
        "--warmup",
        "5",
        "--out",
        out,
        *LENIENT_INT8,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    rows = {r["backend"]: r for r in report["ladder"]["rows"]}
    assert (
        rows["torch"]["figures"]["agreement"] == 1.0
        and rows["torch"]["figures"]["max_abs_diff"] < 1e-4
    )
    assert (
        rows["torch-fp16"]["precision"] == "fp16-autocast"
        and rows["torch-fp16"]["figures"]["agreement"] >= 0.99
    )
    assert report["environment"]["gpu"]["gpu"]["name"]
    assert report["environment"]["torch"]["tf32"] == {"cudnn": False, "matmul": False}
    for e in report["latency"]:
        assert e["model"]["runs"] == 20 and e["model"]["p50_ms"] > 0
        if e["backend"].startswith("torch"):  # CUDA events and peak GPU memory per batch size
            assert e["model"]["timer"] == "cuda-events"
            assert e["gpu_memory"]["model"]["working_bytes"] > 0


def test_stability_ratios_are_paired_per_round():
    from benchmarks.studies.bench_stability import compare_runs, ratios

    def entry(name, samples, rounds):
        return {
            "backend": name,
            "batch_size": 1,
            "rounds": rounds,
            "model": {"samples_ms": samples},
        }

    # Round 2 ran under load (every backend 3x slower): the paired ratio does not notice.
    torch = entry("torch", [10, 10, 30, 30], 2)
    onnx = entry("onnx", [2, 2, 6, 6], 2)
    int8 = entry("onnx-int8", [1, 1, 3, 3], 2)
    a = {"latency": [torch, onnx, int8]}
    assert ratios(a) == {"ORT FP32 / PyTorch": {1: 0.2}, "ORT INT8 / ORT FP32": {1: 0.5}}
    b = {"latency": [torch, entry("onnx", [2.6, 2.6, 7.8, 7.8], 2), int8]}
    rows = compare_runs(a, b, 0.15)
    assert [(r["ratio"], round(r["change"], 3), r["ok"]) for r in rows] == [
        ("ORT FP32 / PyTorch", 0.3, False),
        ("ORT INT8 / ORT FP32", pytest.approx(0.231, abs=1e-3), False),
    ]
