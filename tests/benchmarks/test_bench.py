"""`edgeft bench` on a small real bundle: ladder, latency, reports, planted faults, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.bench import BenchOptions, run_bench
from edgeft.errors import ParityError, UserError
from tests.bench_support import (
    LENIENT_INT8,
    add_onnx,
    copy_bundle,
    set_onnx_preprocessing_metadata,
    swapped_pp,
    tiny_bench_bundle,
)
from tests.conftest import (
    MOBILENET_V2_WEIGHTS,
    assert_one_line_error,
    needs_assets,
    record_artifact,
    run_cli,
)

pytestmark = needs_assets(MOBILENET_V2_WEIGHTS)
FAST = ["--runs", "3", "--warmup", "1", "--threads", "1"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_bench_bundle(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_report(tiny, tmp_path_factory):
    """One full CLI run on the tiny bundle (all backends, batch sizes 1 and 4)."""
    out = tmp_path_factory.mktemp("bench_out") / "report"
    proc = run_cli(
        "bench", tiny, "--device", "cpu", "--batch-sizes", "1,4", "--out", out, *FAST, *LENIENT_INT8
    )
    return proc, out


def _png_ok(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.width > 100 and im.height > 100


def test_cpu_run_writes_ladder_latency_json_markdown_plots(tiny_report, tiny):
    proc, out = tiny_report
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "edgeft.bench/1"
    status = {b["name"]: b for b in report["backends"]}
    assert [n for n, b in status.items() if b["status"] == "ran"] == ["torch", "onnx", "onnx-int8"]
    # Backends that cannot run here are listed with the reason.
    assert "CUDA" in status["torch-fp16"]["reason"]
    assert "onnx-folded" in status["onnx-folded"]["reason"]
    assert status["trt-fp16"]["status"] == "unavailable" and status["trt-fp16"]["reason"]
    assert status["onnx"]["sha256_matches_record"] is True

    rows = {r["backend"]: r for r in report["ladder"]["rows"]}
    ref = report["ladder"]["reference"]
    assert ref["n"] == report["data"]["n_images"] == 12 and ref["accuracy"] == 1.0
    assert rows["torch"]["figures"]["max_abs_diff"] == 0.0
    onnx = rows["onnx"]["figures"]
    assert onnx["agreement"] == 1.0 and onnx["accuracy_drop_pp"] == 0.0
    assert onnx["max_abs_diff"] < 1e-4 and rows["onnx"]["passed"]
    assert (
        rows["onnx-int8"]["tolerance"]["max_accuracy_drop"] == 100.0
    )  # the CLI override reached it
    for name in ("onnx", "onnx-int8"):  # the same numbers as the export-time parity records
        rec = json.loads((tiny / "bundle.json").read_text())["artifacts"][name]["parity"]
        fig = rows[name]["figures"]
        assert fig["accuracy"] == rec["accuracy"] and fig["agreement"] == rec["agreement"]
        assert fig["max_abs_diff"] == pytest.approx(rec["max_abs_diff"], rel=0.2, abs=1e-4)
        assert [f["path"] for f in fig["flipped"]] == [f["path"] for f in rec["flipped"]]
        assert rows[name]["export_parity"]["agrees"] is True
    assert rows["onnx"]["tolerance_from"] == "export record"
    assert rows["onnx-int8"]["tolerance_from"] == "--tolerance"

    lat = {(e["backend"], e["batch_size"]): e for e in report["latency"]}
    assert set(lat) == {(b, s) for b in ("torch", "onnx", "onnx-int8") for s in (1, 4)}
    for e in lat.values():
        for kind in ("model", "e2e"):
            st = e[kind]
            assert st["runs"] == 3 and len(st["samples_ms"]) == 3
            assert st["min_ms"] <= st["p50_ms"] <= st["p90_ms"] <= st["p99_ms"] <= st["max_ms"]
            assert st["throughput_ips"] == pytest.approx(e["batch_size"] * 1e3 / st["mean_ms"])
    assert report["environment"]["threads"]["requested"] == 1
    assert report["environment"]["cpu"]["logical_cores"] == os.cpu_count()

    md = (out / "report.md").read_text()
    assert "## Parity ladder" in md and "## Latency" in md and "| onnx-int8 | int8 |" in md
    for png in report["files"]["plots"]:
        assert _png_ok(out / png)
    assert set(report["files"]["plots"]) == {"accuracy_vs_latency.png", "latency_distribution.png"}
    if rows["onnx-int8"]["figures"]["flipped"]:
        assert _png_ok(out / report["files"]["contact_sheets"]["onnx-int8"])
    assert "Parity ladder" in proc.stdout and "Latency in ms" in proc.stdout


def test_planted_fault_wrong_preprocessing_record_exits_3(tiny, tmp_path):
    b = copy_bundle(tiny, tmp_path / "b")
    add_onnx(
        b, record_pp=swapped_pp(b), parity=False
    )  # mean and std swapped in the artifact record
    out = tmp_path / "out"
    proc = run_cli("bench", b, "--backends", "onnx", "--batch-sizes", "1", "--out", out, *FAST)
    line = assert_one_line_error(proc, 3, "parity ladder failed: onnx: accuracy")
    assert "differs from the bundle's in mean, std" in line
    report = json.loads((out / "report.json").read_text())  # reports are written before the exit
    row = report["ladder"]["rows"][0]
    assert not row["passed"] and row["preprocessing"]["differs_from_bundle"] == ["mean", "std"]
    assert f"drop {row['figures']['accuracy_drop_pp']:.2f} pp" in line
    assert row["figures"]["max_abs_diff"] > 1e-2
    assert report["verdict"]["passed"] is False and "onnx" in report["verdict"]["breaches"]


def test_planted_fault_in_the_onnx_metadata_is_caught(tiny, tmp_path):
    """edgeft export stamps the contract into the ONNX file (metadata edgeft.preprocessing):
    a device reading it would normalise with swapped mean/std."""
    b = copy_bundle(tiny, tmp_path / "b")
    set_onnx_preprocessing_metadata(b, "onnx", swapped_pp(b))
    with pytest.raises(ParityError, match="differs from the bundle's in mean, std") as err:
        run_bench(
            BenchOptions(
                bundle=b,
                backends=["onnx"],
                batch_sizes=(1,),
                runs=2,
                warmup=0,
                out=tmp_path / "o",
                quiet=True,
            )
        )
    assert "onnx: accuracy" in str(err.value)
    row = json.loads((tmp_path / "o" / "report.json").read_text())["ladder"]["rows"][0]
    assert row["preprocessing"] == {
        "source": "ONNX metadata",
        "differs_from_bundle": ["mean", "std"],
    }
    assert not row["passed"]


def test_folded_graph_with_swapped_stats_fails_and_right_stats_pass(tiny, tmp_path):
    """onnx-folded: normalisation inside the graph; input 0..1. Wrong constants baked in
    (a wrong preprocessing record at export) fail the ladder; the right ones match FP32."""
    pp = json.loads((tiny / "bundle.json").read_text())["preprocessing"]
    good = copy_bundle(tiny, tmp_path / "good")
    add_onnx(good, name="onnx-folded", fold=(pp["mean"], pp["std"]), parity=False)
    report = run_bench(
        BenchOptions(
            bundle=good,
            backends=["onnx-folded"],
            batch_sizes=(2,),
            runs=2,
            warmup=1,
            out=tmp_path / "o1",
            quiet=True,
        )
    )
    fig = report["ladder"]["rows"][0]["figures"]
    assert fig["agreement"] == 1.0 and fig["max_abs_diff"] < 1e-4
    assert report["latency"][0]["model"]["runs"] == 2
    bad = copy_bundle(tiny, tmp_path / "bad")
    add_onnx(bad, name="onnx-folded", fold=(pp["std"], pp["mean"]), parity=False)
    with pytest.raises(ParityError, match="onnx-folded: accuracy .* breaches") as err:
        run_bench(
            BenchOptions(
                bundle=bad,
                backends=["onnx-folded"],
                batch_sizes=(1,),
                runs=2,
                warmup=1,
                out=tmp_path / "o2",
                quiet=True,
            )
        )
    assert err.value.exit_code == 3 and "onnx-folded" in err.value.figures["breaches"]


def test_compare_two_reports(tiny_report, tiny, tmp_path):
    _, a = tiny_report
    b = tmp_path / "b"
    proc = run_cli(
        "bench", tiny, "--backends", "torch,onnx", "--batch-sizes", "1", "--out", b, *FAST
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("bench", "--compare", a / "report.json", b, "--out", tmp_path / "cmp")
    assert proc.returncode == 0, proc.stderr
    assert "Ladder" in proc.stdout and "Latency" in proc.stdout and "onnx-int8" in proc.stdout
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| onnx | 1 |" in md and "B/A" in md
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "something/1"}))
    assert_one_line_error(run_cli("bench", "--compare", bad, b), 2, "is not an edgeft bench report")
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": "edgeft.bench/9"}))
    assert_one_line_error(run_cli("bench", "--compare", newer, b), 2, "upgrade edgeft")


# -- bad input ----------------------------------------------------------------------------


def _class_dir(root: Path, label: str, n: int, size: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            root / label / f"{i}.png"
        )
    return root / label


def test_data_with_unknown_labels_unreadable_and_non_image_files(tiny, tmp_path):
    data = tmp_path / "data"
    colors = Path(json.loads((tiny / "split.json").read_text())["root"])
    shutil.copytree(colors / "red", data / "red")
    shutil.copytree(colors / "blue", data / "blue")
    _class_dir(data, "purple", 3)  # not a label of the bundle: reported, excluded
    (data / "red" / "broken.png").write_bytes(
        b"\x89PNG\r\n\x1a\nnot really"
    )  # unreadable: skipped, counted
    (data / "blue" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    proc = run_cli(
        "bench",
        tiny,
        "--data",
        data,
        "--backends",
        "torch",
        "--batch-sizes",
        "1",
        "--out",
        out,
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads((out / "report.json").read_text())["data"]
    assert d["unknown_labels"] == {"purple": 3}
    assert d["skipped_unreadable"] == 1 and d["skipped"][0][0].endswith("broken.png")
    assert d["ignored_files"] == 1
    assert d["n_images"] == 40 and d["per_class"] == {"blue": 20, "green": 0, "red": 20}
    said = " ".join(proc.stdout.split())  # rich wraps lines at 80 columns
    assert "1 unreadable skipped" in said and "purple (3)" in said


@pytest.mark.parametrize(
    "layout, message",
    [
        ("empty", "holds no class folders"),
        ("empty_classes", "no labelled images"),
        ("unknown_only", "is a label of the bundle"),
        ("all_unreadable", "none of the 2 labelled images could be read"),
        ("missing", "is not a folder"),
    ],
)
def test_bad_data(tiny, tmp_path, layout, message):
    data = tmp_path / "data"
    if layout != "missing":
        data.mkdir()
    if layout == "empty_classes":
        (data / "red").mkdir()
    elif layout == "unknown_only":
        _class_dir(data, "purple", 2)
    elif layout == "all_unreadable":
        (data / "red").mkdir()
        for i in range(2):
            (data / "red" / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(UserError, match=message):
        run_bench(
            BenchOptions(bundle=tiny, data=data, backends=["torch"], out=tmp_path / "o", quiet=True)
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"runs": 0}, "--runs must be at least 1"),
        ({"runs": -3}, "--runs must be at least 1"),
        ({"seconds": 0.0}, "--seconds must be positive"),
        ({"runs": 2, "seconds": 1.0}, "not both"),
        ({"batch_sizes": (0,)}, "--batch-sizes must be positive integers, not 0"),
        ({"batch_sizes": (1, -8)}, "not -8"),
        ({"batch_sizes": ()}, "--batch-sizes is empty"),
        ({"warmup": -1}, "--warmup must be 0 or more"),
        ({"threads": 0}, "--threads must be at least 1"),
        ({"backends": ["torch", "tflite"]}, "unknown backend 'tflite'"),
        ({"device": "tpu"}, "unknown --device 'tpu'"),
        ({"tolerances": ["int8.max_accuracy_drop"]}, "expected KEY.FIELD=VALUE"),
        ({"tolerances": ["int4.max_accuracy_drop=1"]}, "neither a precision"),
        ({"tolerances": ["int8.max_drop_pp=1"]}, "unknown field"),
        ({"tolerances": ["fp16.min_agreement=99"]}, "a fraction between 0 and 1"),
        ({"tolerances": ["fp32.max_abs_diff=-1"]}, "0 or more"),
        ({"device": "jetson"}, "needs an NVIDIA Jetson"),
    ],
)
def test_bad_options(tiny, tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        run_bench(BenchOptions(bundle=tiny, out=tmp_path / "o", quiet=True, **kwargs))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runs", "0"], "--runs must be at least 1"),
        (["--batch-sizes", "1,x"], "comma-separated integers"),
        (["--backends", "torch,tflite"], "unknown backend 'tflite'"),
        (["--device", "jetson"], "needs an NVIDIA Jetson"),
    ],
)
def test_bad_options_on_the_command_line_are_one_line(tiny, tmp_path, args, message):
    assert_one_line_error(run_cli("bench", tiny, "--out", tmp_path / "o", *args), 2, message)


def test_missing_bundle_and_no_bundle(tmp_path):
    assert_one_line_error(run_cli("bench", tmp_path / "nope"), 2, "does not exist")
    assert_one_line_error(run_cli("bench"), 2, "needs a BUNDLE")


def test_no_backend_can_run_lists_the_reasons(tiny, tmp_path):
    with pytest.raises(
        UserError,
        match="no backend can run on --device cpu here: torch-fp16: torch-fp16 runs on an "
        "NVIDIA GPU with CUDA.*onnx-folded: bundle has no onnx-folded",
    ):
        run_bench(
            BenchOptions(
                bundle=tiny, backends=["torch-fp16", "onnx-folded"], out=tmp_path / "o", quiet=True
            )
        )


def test_broken_artifact_is_reported_as_failed(tiny, tmp_path):
    import hashlib

    b = copy_bundle(tiny, tmp_path / "b")
    manifest = json.loads((b / "bundle.json").read_text())
    onnx = b / manifest["artifacts"]["onnx"]["path"]
    onnx.write_bytes(b"not an onnx file")
    # As edited after export: refused before ONNX Runtime sees it, shown in the report.
    out = tmp_path / "o"
    proc = run_cli(
        "bench", b, "--backends", "torch,onnx", "--batch-sizes", "1", "--out", out, *FAST
    )
    assert_one_line_error(proc, 2, "backend onnx failed to run: onnx artifact")
    assert "was modified after it was recorded" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert {b["name"]: b["status"] for b in report["backends"]} == {
        "torch": "ran",
        "onnx": "refused",
    }
    assert report["backends"][1]["sha256_matches_record"] is False
    # As recorded (a broken export): ONNX Runtime's own refusal, one line.
    rec = dict(manifest["artifacts"]["onnx"], sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
    record_artifact(b, "onnx", rec)
    proc = run_cli(
        "bench", b, "--backends", "torch,onnx", "--batch-sizes", "1", "--out", out, *FAST
    )
    assert_one_line_error(proc, 2, "backend onnx failed to run: ONNX Runtime cannot load")
    report = json.loads((out / "report.json").read_text())
    assert {b["name"]: b["status"] for b in report["backends"]}["onnx"] == "failed"
    assert report["backends"][1]["sha256_matches_record"] is True


def test_planted_fault_a_swapped_logit_column_exits_3(tiny, tmp_path):
    """Two output columns swapped in a correct FP32 ONNX (as if its labels were reordered):
    the scaled FP32 bound fails it, however the CPU rounds."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    b = copy_bundle(tiny, tmp_path / "b")
    path = b / "model.onnx"
    model = onnx.load(str(path))
    last = next(n for n in reversed(model.graph.node) if n.op_type in ("Gemm", "MatMul"))
    inits = {t.name: t for t in model.graph.initializer}
    for name in last.input[1:]:
        if name in inits:
            a = numpy_helper.to_array(inits[name]).copy()
            axis = 0 if a.ndim == 1 or last.op_type == "Gemm" else 1
            idx = [1, 0, *range(2, a.shape[axis])]
            inits[name].CopyFrom(numpy_helper.from_array(np.take(a, idx, axis=axis), name))
    onnx.save(model, str(path))
    rec = json.loads((b / "bundle.json").read_text())["artifacts"]["onnx"]
    record_artifact(b, "onnx", dict(rec, sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    proc = run_cli(
        "bench", b, "--backends", "torch,onnx", "--batch-sizes", "1", "--out", tmp_path / "o", *FAST
    )
    line = assert_one_line_error(proc, 3, "parity ladder failed: onnx:")
    assert "max |diff|/(1+|ref|)" in line
