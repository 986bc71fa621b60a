"""`edgeft bench` on the real EuroSAT MobileNetV2 bundle (slow: trains it once per session)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from edgeft.parity import breaches, tolerance_for
from tests.bench_support import (
    add_onnx,
    export_artifacts,
    set_onnx_preprocessing_metadata,
    swapped_pp,
)
from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow
FAST = ["--runs", "5", "--warmup", "2", "--threads", "1"]


def test_eurosat_cpu_bench_agrees_with_the_export_records(eurosat_bundle_copy, tmp_path):
    b = eurosat_bundle_copy
    # This short-trained 64 px fixture loses 2-3 points in INT8 (its export gate then keeps
    # layers in float and still misses 1 pp); a 5 pp budget is recorded and bench honours it.
    export_artifacts(b, max_accuracy_drop=5.0)
    records = json.loads((b / "bundle.json").read_text())["artifacts"]
    # bench judges each artifact by the tolerance it was exported under: the same verdict.
    int8_breaches = breaches(
        records["onnx-int8"]["parity"],
        tolerance_for("int8", records["onnx-int8"]["parity"]["tolerance"]),
    )
    out = tmp_path / "report"
    proc = run_cli("bench", b, "--device", "cpu", "--batch-sizes", "1,8", "--out", out, *FAST)
    assert proc.returncode == (3 if int8_breaches else 0), proc.stderr[-2000:]
    if int8_breaches:
        assert_one_line_error(proc, 3, "parity ladder failed: onnx-int8: accuracy")

    report = json.loads((out / "report.json").read_text())
    assert report["data"]["n_images"] == records["onnx"]["parity"]["n"] == 400
    rows = {r["backend"]: r for r in report["ladder"]["rows"]}
    assert list(rows) == ["torch", "onnx", "onnx-int8"]
    assert rows["onnx"]["passed"] and rows["onnx"]["figures"]["agreement"] == 1.0
    # FP32 within the scaled bound (issue 14.9: an absolute 1e-4 was crossed by a correct
    # model on an AVX-512 Intel CPU at 224 px; CI's CPU measured 3.2e-5 here, this one 1e-6)
    assert rows["onnx"]["figures"]["max_scaled_diff"] <= tolerance_for("fp32").max_scaled_diff
    assert report["ladder"]["reference"]["accuracy"] > 0.7  # a real model, 10 classes
    for name in ("onnx", "onnx-int8"):
        fig, rec = rows[name]["figures"], records[name]["parity"]
        assert fig["accuracy"] == rec["accuracy"] and fig["agreement"] == rec["agreement"]
        assert fig["accuracy_drop_pp"] == pytest.approx(rec["accuracy_drop_pp"])
        # The record keeps the first flipped images only; all of them are flipped here too.
        assert len(fig["flipped"]) == rec.get("flipped_count", len(rec["flipped"]))
        assert {f["path"] for f in rec["flipped"]} <= {f["path"] for f in fig["flipped"]}
        assert fig["max_abs_diff"] == pytest.approx(rec["max_abs_diff"], rel=0.2, abs=1e-4)
        assert rows[name]["export_parity"]["agrees"] is True
    assert rows["onnx-int8"]["breaches"] == int8_breaches
    assert rows["onnx-int8"]["tolerance_from"] == "export record"

    lat = {(e["backend"], e["batch_size"]) for e in report["latency"]}
    assert lat == {(n, bs) for n in ("torch", "onnx", "onnx-int8") for bs in (1, 8)}
    said = " ".join(proc.stdout.split())
    assert "Parity ladder vs PyTorch FP32" in said and "Latency in ms" in said
    md = (out / "report.md").read_text()
    assert "## Parity ladder" in md and "## Latency" in md and "| onnx-int8 | 8 |" in md
    for png in report["files"]["plots"] + list(report["files"]["contact_sheets"].values()):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width > 300
    assert len(report["files"]["plots"]) == 2


def test_eurosat_planted_fault_swapped_mean_std_exits_3_naming_the_drop(
    eurosat_bundle_copy, tmp_path
):
    b = eurosat_bundle_copy
    add_onnx(b, parity=False)
    set_onnx_preprocessing_metadata(b, "onnx", swapped_pp(b))
    out = tmp_path / "report"
    proc = run_cli("bench", b, "--backends", "onnx", "--batch-sizes", "1", "--out", out, *FAST)
    line = assert_one_line_error(proc, 3, "parity ladder failed: onnx: accuracy")
    row = json.loads((out / "report.json").read_text())["ladder"]["rows"][0]
    drop = row["figures"]["accuracy_drop_pp"]
    assert drop > 10.0, row["figures"]  # swapped statistics wreck a real model
    assert f"(drop {drop:.2f} pp)" in line and "differs from the bundle's in mean, std" in line
