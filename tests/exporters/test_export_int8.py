"""ONNX Runtime INT8: calibration on real images, the uint8/int8 recipe that ONNX Runtime
fuses into QLinearConv, calibration methods that really differ, the float fallback, and the
exit-3 failure with per-layer figures."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgeft.bundle import Bundle
from exporters.pipeline import ExportOptions, export_bundle
from tests.conftest import run_cli
from tests.export_support import manifest, partials, sha256

pytestmark = pytest.mark.slow


# The session's EuroSAT bundle is trained for two short epochs at 64 px (83% accuracy): its
# INT8 drop measured 1.5-4.5 points over calibration settings, noise included (one image is
# 0.25 points), so these tests allow 5 points. The 1-point goal is shown on the fully
# trained 128 px bundle by benchmarks/export_latency.py.
LIMIT = 5.0


@pytest.fixture(scope="module")
def int8_bundle(eurosat_bundle, tmp_path_factory):
    """The real EuroSAT bundle with ``onnx`` and ``onnx-int8`` exported (default recipe)."""
    b = tmp_path_factory.mktemp("eurosat_int8") / "b"
    shutil.copytree(eurosat_bundle, b)
    export_bundle(ExportOptions(bundle=b, int8=True, max_accuracy_drop=LIMIT, quiet=True))
    return b


@pytest.fixture(scope="module")
def calib_x(int8_bundle):
    from edgeft.calibration import load_calibration

    bundle = Bundle.load(int8_bundle)
    return load_calibration(bundle, bundle.preprocessing, 40).x


def test_int8_meets_the_accuracy_limit_and_records_how(int8_bundle):
    mf = manifest(int8_bundle)
    rec = mf["artifacts"]["onnx-int8"]
    p = rec["parity"]
    assert p["checked"] and p["passed"] and p["n"] == 400
    assert p["accuracy_drop_pp"] <= LIMIT and p["agreement"] >= 0.90
    assert rec["precision"] == "int8" and rec["sha256"] == sha256(int8_bundle / "model-int8.onnx")
    b = rec["build"]
    assert b["activations"] == "uint8 asymmetric" and b["weights"] == "int8 symmetric per-channel"
    assert b["quantize_bias"] is True and b["max_accuracy_drop_pp"] == LIMIT
    # Calibrated on 200 real training images, 20 per class, through the bundle's preprocessing.
    cal = b["calibration"]
    assert (
        cal["method"] == "percentile"
        and cal["used"] == 200
        and set(cal["per_class"].values()) == {20}
    )
    assert cal["source"] == "bundle training images (split.json)"
    assert (int8_bundle / cal["cache"]).is_file()
    # What ONNX Runtime runs: every Conv fused to QLinearConv except the float fallbacks
    # (a float layer also unfuses the conv that feeds it).
    graph = rec["target"]["optimized_graph"]
    n_float = len(b["float_nodes"])
    assert graph["qlinear_conv"] + graph["float_conv"] == 52
    assert graph["float_conv"] <= 2 * n_float
    assert rec["source"]["sha256"] == mf["artifacts"]["onnx"]["sha256"]
    assert not partials(int8_bundle)


def test_int8_runner_reproduces_the_recorded_figures(int8_bundle):
    from edgeft import formats
    from edgeft.labelled import load_labelled
    from edgeft.parity import bundle_valid_samples, compare, run_batches

    bundle = Bundle.load(int8_bundle)
    v = load_labelled(bundle_valid_samples(bundle), bundle.labels, bundle.preprocessing)
    with formats.make_runner("torch", bundle) as t, formats.make_runner("onnx-int8", bundle) as q:
        fig = compare(run_batches(t, v.x), run_batches(q, v.x), v.targets, bundle.labels)
    rec = bundle.artifact("onnx-int8").parity
    assert fig["agreement"] == pytest.approx(rec["agreement"])
    assert fig["accuracy_drop_pp"] == pytest.approx(rec["accuracy_drop_pp"])


def test_calibration_methods_give_different_ranges(int8_bundle, calib_x, monkeypatch):
    """Each --calib-method changes the ranges (quantize_static's own Entropy did not)."""
    from exporters import ort_int8
    from exporters.ort_int8 import calibrate

    # Fewer histogram bins keep the entropy search (quadratic in bins) to seconds here.
    monkeypatch.setattr(ort_int8, "HIST_BINS", 256)

    path = int8_bundle / "model.onnx"
    r = {m: calibrate(path, calib_x, m) for m in ("minmax", "entropy", "percentile")}
    assert r["minmax"].keys() == r["entropy"].keys() == r["percentile"].keys()
    names = list(r["minmax"])
    width = {m: np.array([r[m][n][1] - r[m][n][0] for n in names]) for m in r}
    # Entropy and percentile clip outliers: never wider than the observed extremes, and
    # narrower for a good share of the tensors; the three methods differ from each other.
    for m in ("entropy", "percentile"):
        assert np.all(width[m] <= width["minmax"] + 1e-6)
        assert np.mean(width[m] < 0.99 * width["minmax"]) > 0.3, m
    assert not np.allclose(width["entropy"], width["percentile"])


def test_calibrating_in_chunks_keeps_the_ranges(int8_bundle, calib_x, monkeypatch):
    """Chunks bound the calibrator's memory (it holds every intermediate tensor of one
    call's images): MinMax ranges are the same, Percentile's within two histogram bins."""
    from exporters import ort_int8

    monkeypatch.setattr(ort_int8, "HIST_BINS", 256)
    path = int8_bundle / "model.onnx"
    assert len(calib_x) >= 32
    extremes = ort_int8.calibrate(path, calib_x, "minmax", chunk=len(calib_x))
    assert ort_int8.calibrate(path, calib_x, "minmax", chunk=8) == extremes
    whole = ort_int8.calibrate(path, calib_x, "percentile", chunk=len(calib_x))
    parts = ort_int8.calibrate(path, calib_x, "percentile", chunk=8)
    assert whole.keys() == parts.keys()
    for name, (lo, hi) in whole.items():
        bin_width = 2 * max(abs(v) for v in extremes[name]) / 256  # the whole histogram's
        assert np.allclose(parts[name], [lo, hi], rtol=0, atol=2 * bin_width), name


def test_keep_float_runs_the_node_in_float_where_nodes_to_exclude_does_not(int8_bundle, calib_x):
    """ONNX Runtime re-quantizes an 'excluded' Conv between Q/DQ pairs; keep_float really
    keeps it in float, and with every layer kept the model matches FP32 again (the Clip
    that the quantizer folded into Q is restored)."""
    import onnx

    from exporters import int8_fallback as fb
    from exporters.ort_int8 import calibrate, ort_graph_summary, quantize

    fp32_path = int8_bundle / "model.onnx"
    ranges = calibrate(fp32_path, calib_x, "minmax")
    q_path = int8_bundle.parent / "q.onnx"
    quantize(fp32_path, q_path, ranges, "ort-cpu")
    q, f = onnx.load(str(q_path)), onnx.load(str(fp32_path))
    conv = next(n for n in fb.candidates(q) if n.endswith("conv.0.0/Conv"))
    kept = fb.keep_float(q, f, [conv])
    kept_path = int8_bundle.parent / "kept.onnx"
    fb.save_model(kept, kept_path)
    full, one = ort_graph_summary(q_path), ort_graph_summary(kept_path)
    assert full["qlinear_conv"] == 52
    assert one["qlinear_conv"] < 52 and one["float_conv"] >= 1
    ref = fb.run_model(f, calib_x)
    all_float = fb.keep_float(q, f, fb.candidates(q))
    assert fb.kl_to_reference(ref, fb.run_model(all_float, calib_x)) < 1e-3
    assert fb.kl_to_reference(ref, fb.run_model(q, calib_x)) > 10 * fb.kl_to_reference(
        ref, fb.run_model(all_float, calib_x)
    )


def test_unreachable_limit_exits_3_with_per_layer_figures(int8_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(int8_bundle, b)
    before = (b / "bundle.json").read_bytes()
    int8_sha = sha256(b / "model-int8.onnx")
    # One calibration image gives poor ranges; one float layer cannot repair a 0-point budget.
    proc = run_cli(
        "export",
        b,
        "--int8",
        "--force",
        "--calib-count",
        "1",
        "--calib-method",
        "minmax",
        "--max-accuracy-drop",
        "0",
        "--max-float-layers",
        "1",
    )
    assert proc.returncode == 3, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("edgeft: error: onnx-int8 does not match"), (
        proc.stderr
    )
    assert "drop (pp) with N layers kept in float, N:drop = 0:" in err[0]
    assert "most sensitive layers (KL gain)" in err[0] and "onnx-int8 was not kept" in err[0]
    # The previous INT8 artifact and the manifest are untouched; nothing half-written stays.
    assert (b / "bundle.json").read_bytes() == before and sha256(b / "model-int8.onnx") == int8_sha
    assert not partials(b)
