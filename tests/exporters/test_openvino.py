"""OpenVINO forms: one runner, one exporter module and three rows (issue 11). Real OpenVINO
and NNCF on a tiny bundle; what a user meets without them; a tampered IR."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.bench_support import tiny_bench_bundle
from tests.conftest import assert_one_line_error, copy_bundle, run_cli

pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino)")


@pytest.fixture(scope="module")
def ov_bundle(tmp_path_factory):
    b = copy_bundle(tiny_bench_bundle(tmp_path_factory), tmp_path_factory.mktemp("ov") / "b")
    proc = run_cli(
        "export", b, "--format", "openvino,openvino-int8", "--max-accuracy-drop", "100", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return b


def test_ir_artifacts_are_recorded_with_both_files(ov_bundle):
    arts = json.loads((ov_bundle / "bundle.json").read_text())["artifacts"]
    for name, xml in (
        ("openvino", "model-openvino.xml"),
        ("openvino-int8", "model-int8-openvino.xml"),
    ):
        rec = arts[name]
        assert rec["path"] == xml and rec["format"] == "openvino-ir"
        assert list(rec["extra_files"]) == [xml.replace(".xml", ".bin")]
        files = (ov_bundle / xml, ov_bundle / xml.replace(".xml", ".bin"))
        assert rec["size_bytes"] == sum(f.stat().st_size for f in files)  # the weights count
        assert rec["parity"]["checked"] and rec["parity"]["passed"], rec["parity"]
        assert rec["target"]["exported_on"]["int8"] in ("avx2", "vnni", "amx", "arm-dot", "none")
    assert arts["openvino"]["parity"]["agreement"] == 1.0
    assert arts["openvino-int8"]["build"]["subset_size"] >= 1


@pytest.fixture(scope="module")
def ov_bundle_under_bar(ov_bundle, tmp_path_factory):
    """The same export with an agreement bar no whole graph can reach: the path of a bundle
    whose all-INT8 form agrees too little (the 224 px EuroSAT one: 95.75%)."""
    from exporters import openvino as ov_export
    from exporters.options import ExportOptions
    from exporters.pipeline import export_bundle

    b = copy_bundle(ov_bundle, tmp_path_factory.mktemp("ov_bar") / "b")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ov_export, "ALL_INT8_MIN_AGREEMENT", 1.01)
        export_bundle(
            ExportOptions(
                bundle=b, format=["openvino-int8"], max_accuracy_drop=100.0, force=True, quiet=True
            )
        )
    return b


def _int8_build(bundle) -> dict:
    return json.loads((bundle / "bundle.json").read_text())["artifacts"]["openvino-int8"]["build"]


def _convolution_feeds(bundle) -> tuple[list[str], list[str]]:
    """Names of the IR's convolutions in order, and the type of the op feeding each."""
    import openvino as ov

    model = ov.Core().read_model(str(bundle / "model-int8-openvino.xml"))
    assert model.input(0).get_partial_shape()[0].is_dynamic  # any batch size
    convs = [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
    ]
    return [c.get_friendly_name() for c in convs], [
        c.input_value(0).get_node().get_type_name() for c in convs
    ]


def _run_in_float(bundle) -> list[str]:
    """Convolutions the CPU plugin runs in float, read back from the compiled model (hint
    f32): FakeQuantize in the graph is not enough -- an IR read from ONNX with
    ``read_model`` had the depthwise weights' FakeQuantize behind a ``Reshape``, and the
    plugin ran those 17 convolutions in f32."""
    import openvino as ov

    model = ov.Core().read_model(str(bundle / "model-int8-openvino.xml"))
    model.reshape([1, *[d.get_length() for d in list(model.input(0).get_partial_shape())[1:]]])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    precision = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            precision[op.get_friendly_name()] = info["runtimePrecision"].astype(str)
    assert len(precision) == 52, precision  # MobileNetV2: 35 convolutions + 17 depthwise
    return sorted(n for n, p in precision.items() if p not in ("u8", "i8"))


def test_int8_ships_the_whole_graph_when_it_agrees(ov_bundle):
    """The tiny bundle's all-INT8 form agrees on every image: it is kept, every convolution
    reads FakeQuantize and runs in u8."""
    build = _int8_build(ov_bundle)
    whole = build["whole_graph"]
    assert whole["kept"] is True and whole["agreement"] >= whole["min_agreement"] == 0.985
    assert build["float_convs"] == [] and "accuracy_control" not in build
    names, feeds = _convolution_feeds(ov_bundle)
    assert feeds == ["FakeQuantize"] * len(names)
    assert _run_in_float(ov_bundle) == []


def test_int8_under_the_bar_leaves_the_first_convolution_output_unrounded(ov_bundle_under_bar):
    """The convolution reading the first one's output reads it in float and runs in float;
    every other one, the first included, reads FakeQuantize and runs in u8."""
    build = _int8_build(ov_bundle_under_bar)
    assert build["whole_graph"]["kept"] is False
    assert build["accuracy_control"]["used"] is False  # the budget is wide: first pass kept
    names, feeds = _convolution_feeds(ov_bundle_under_bar)
    assert build["float_convs"] == [names[1]]  # MobileNetV2: the first depthwise
    assert feeds[1] != "FakeQuantize"
    assert feeds[:1] + feeds[2:] == ["FakeQuantize"] * (len(feeds) - 1)
    assert _run_in_float(ov_bundle_under_bar) == [names[1]]


def test_bench_runs_every_openvino_form_and_recommends(ov_bundle, tmp_path):
    from edgeft.platform.cpu import cpu_isa

    out = tmp_path / "r"
    proc = run_cli(
        "bench",
        ov_bundle,
        "--backends",
        "torch,onnx,openvino,openvino-bf16,openvino-int8,openvino-int8-bf16",
        "--batch-sizes",
        "1",
        "--runs",
        "3",
        "--rounds",
        "1",
        "--no-e2e",
        "--out",
        out,
        "--tolerance",
        "int8.max_accuracy_drop=100",
        "--tolerance",
        "int8.min_agreement=0",
        "--tolerance",
        "bf16.max_accuracy_drop=100",
        "--tolerance",
        "bf16.min_agreement=0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    status = {b["name"]: b["status"] for b in report["backends"]}
    assert status["openvino"] == status["openvino-int8"] == "ran"
    for bf16_form in ("openvino-bf16", "openvino-int8-bf16"):
        assert status[bf16_form] == ("ran" if cpu_isa()["bf16"] else "unavailable")
    rows = {r["backend"]: r for r in report["ladder"]["rows"]}
    assert rows["openvino"]["passed"] and rows["openvino"]["figures"]["agreement"] == 1.0
    assert report["recommendation"][0]["best"] in rows
    assert "recommended at batch 1" in proc.stdout


def test_a_tampered_ir_is_refused(ov_bundle, tmp_path):
    b = copy_bundle(ov_bundle, tmp_path / "b")
    data = bytearray((b / "model-openvino.bin").read_bytes())
    data[100] ^= 0xFF
    (b / "model-openvino.bin").write_bytes(bytes(data))
    proc = run_cli("predict", b, b / "golden", "--backend", "openvino")
    assert_one_line_error(proc, 2, "openvino artifact file")
    assert "was modified after it was recorded" in proc.stderr


def test_without_openvino_one_line_says_what_to_install(ov_bundle, tmp_path):
    code = (
        "import sys; sys.modules['openvino'] = None; sys.modules['nncf'] = None\n"
        "from edgeft.cli import main; sys.argv = ['edgeft'] + sys.argv[1:]; main()"
    )

    def run(*args):
        argv = [sys.executable, "-c", code, *map(str, args)]
        return subprocess.run(argv, capture_output=True, text=True)

    proc = run("predict", ov_bundle, ov_bundle / "golden", "--backend", "openvino")
    assert_one_line_error(proc, 2, "openvino is not installed (pip install openvino")
    b = copy_bundle(ov_bundle, tmp_path / "b")
    proc = run("export", b, "--format", "openvino", "--force")
    assert_one_line_error(proc, 2, "openvino is not installed: pip install openvino")


def test_nncf_with_no_calibration_images_is_one_line(ov_bundle, tmp_path):
    b = copy_bundle(ov_bundle, tmp_path / "b")
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing to calibrate with")
    proc = run_cli("export", b, "--format", "openvino-int8", "--force", "--calib-data", empty)
    assert_one_line_error(proc, 2, "no readable calibration image")


@pytest.mark.parametrize("backend", ["openvino", "openvino-int8"])
def test_runtime_and_camera_run_the_openvino_forms(ov_bundle, tmp_path, backend):
    """The device runtime self-tests each form on the golden images, and `edgeft camera`
    classifies a video of them with `edgeft predict`'s top-1."""
    from PIL import Image

    from edgeft.runtime import Classifier
    from tests.camera_support import write_lossless_video

    with Classifier.load(ov_bundle, backend=backend, device="cpu") as clf:
        assert clf.backend == backend and clf.describe()["framework"] == "openvino"
        result = clf.self_test()
        assert result.passed and result.checked >= 1, result.detail
    paths = sorted((ov_bundle / "golden").glob("*.png")) or sorted(
        p for p in (ov_bundle / "golden").iterdir() if p.suffix.lower() in (".jpg", ".jpeg")
    )
    size = Image.open(paths[0]).size
    frames = [np.asarray(Image.open(p).convert("RGB").resize(size)) for p in paths]
    video = write_lossless_video(tmp_path / "golden.avi", frames)
    cam = run_cli("camera", ov_bundle, "--source", video, "--backend", backend, "--top-k", "1")
    assert cam.returncode == 0, cam.stderr[-2000:]
    tops = [json.loads(ln)["top"][0]["label"] for ln in cam.stdout.splitlines()]
    resized = [tmp_path / f"{i}.png" for i in range(len(frames))]
    for f, p in zip(frames, resized, strict=True):
        Image.fromarray(f).save(p)
    pred = run_cli("predict", ov_bundle, *resized, "--backend", backend, "--json", "--top-k", "1")
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert tops == [json.loads(ln)["top"][0]["label"] for ln in pred.stdout.splitlines()]


def test_a_first_pass_over_budget_goes_to_nncf_accuracy_control(ov_bundle):
    """The path a bundle whose first INT8 pass breaks the budget takes: real NNCF accuracy
    control on the tiny bundle's model and validation images. The first pass is judged
    failed by the request's scorer (the tiny bundle's 12 images do not break a budget
    reliably); NNCF then validates on its own and returns a model edgeft can save."""
    from types import SimpleNamespace

    import openvino as ov

    from edgeft.bundle import Bundle
    from edgeft.calibration import load_calibration
    from edgeft.labelled import load_labelled
    from edgeft.parity import bundle_valid_samples
    from exporters import openvino as ov_export

    b = Bundle.load(ov_bundle)
    valid = load_labelled(bundle_valid_samples(b), b.labels, b.preprocessing)
    x = load_calibration(b, b.preprocessing, 16).x
    model = ov.convert_model(str(ov_bundle / "model.onnx"))
    model.reshape([1, *x.shape[1:]])
    stem = ov_export.stem_scope(model)
    first = ov_export.quantize(model, x, stem)
    scored = []

    def score(outputs):
        scored.append(outputs.shape)
        return SimpleNamespace(passed=False, accuracy_drop_pp=2.0, agreement=0.8)

    req = SimpleNamespace(options=ov_export.Options(max_accuracy_drop=100.0), score=score)
    data = ov_export._Images(valid, b.preprocessing, False)
    controlled, record = ov_export._fit(req, model, first, x, stem, data)
    assert scored == [(len(valid), len(b.labels))]
    assert record["used"] is True and record["first_pass"]["accuracy_drop_pp"] == 2.0
    out = ov.Core().compile_model(controlled, "CPU")(valid.head(1))[0]
    assert out.shape == (1, len(b.labels)) and np.isfinite(out).all()
