"""A bundle is verified wherever it is used: each defect a tampered or broken bundle can
have gives one line naming it and exit 2, with no traceback, in ``predict``, the runtime,
``camera`` and ``bench`` alike (bench also shows a modified artifact in its report)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeft.errors import UserError
from tests.camera_support import export_onnx, write_lossless_video
from tests.conftest import assert_one_line_error, copy_bundle, run_cli, tiny_bundle


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    b = tiny_bundle(tmp_path_factory.mktemp("defects"))
    export_onnx(b)
    return b


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(3)]
    return write_lossless_video(tmp_path_factory.mktemp("clip") / "c.avi", frames)


def _edit_manifest(b: Path, fn) -> None:
    mf = b / "bundle.json"
    data = json.loads(mf.read_text())
    fn(data)
    mf.write_text(json.dumps(data))


def _labels(delta: int):
    def fn(m):
        labels = (
            m["labels"][:delta] if delta < 0 else m["labels"] + [f"extra{i}" for i in range(delta)]
        )
        # a consistent manifest: only the model files can tell the count is wrong
        m["labels"], m["num_classes"], m["model"]["num_classes"] = labels, len(labels), len(labels)

    return fn


def _resize(m):
    m["preprocessing"]["size"] = [40, 40]
    m["input"]["height"] = m["input"]["width"] = 40


def _flip_byte(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


# name -> (how to break a copy, which backend shows it, text the one line must contain)
DEFECTS = {
    "missing labels": (
        lambda b: _edit_manifest(b, lambda m: m.pop("labels")),
        "onnx",
        "labels: Field required",
    ),
    "labels without num_classes": (
        lambda b: _edit_manifest(b, lambda m: m.update(labels=m["labels"][:-1])),
        "onnx",
        "2 labels but num_classes 3",
    ),
    "fewer labels than outputs": (
        lambda b: _edit_manifest(b, _labels(-1)),
        "onnx",
        "3 outputs but the bundle has 2 labels",
    ),
    "more labels than outputs": (
        lambda b: _edit_manifest(b, _labels(2)),
        "onnx",
        "3 outputs but the bundle has 5 labels",
    ),
    "fewer labels than torch outputs": (
        lambda b: _edit_manifest(b, _labels(-1)),
        "torch",
        "weights.pt has 3 outputs but the bundle has 2 labels",
    ),
    "input shape differs": (
        lambda b: _edit_manifest(b, _resize),
        "onnx",
        "takes input 3x32x32 but the bundle preprocesses to 3x40x40",
    ),
    "garbage weights.pt": (
        lambda b: (b / "weights.pt").write_bytes(os.urandom(4096)),
        "torch",
        "bundle weights",
    ),
    "garbage weights.pt, no sha recorded": (
        lambda b: (
            (b / "weights.pt").write_bytes(b"not a pickle" * 100),
            _edit_manifest(b, lambda m: m["model"].pop("weights_sha256")),
        ),
        "torch",
        "cannot read the bundle weights",
    ),
    "edited model.onnx": (
        lambda b: _flip_byte(b / "model.onnx"),
        "onnx",
        "was modified after it was recorded",
    ),
}


@pytest.fixture(params=list(DEFECTS), scope="module")
def broken(request, good, tmp_path_factory):
    b = copy_bundle(good, tmp_path_factory.mktemp("broken") / "b")
    DEFECTS[request.param][0](b)
    return request.param, b


def test_predict(broken, good):
    name, b = broken
    _, backend, text = DEFECTS[name]
    image = json.loads((good / "split.json").read_text())
    path = Path(image["root"]) / image["valid"][0][0]
    proc = run_cli("predict", b, path, "--backend", backend)
    assert_one_line_error(proc, 2, text)


def test_runtime(broken):
    from edgeft.runtime import Classifier

    name, b = broken
    _, backend, text = DEFECTS[name]
    with pytest.raises(UserError) as err:
        Classifier.load(b, backend=backend, device="cpu")
    assert text in str(err.value) and "\n" not in str(err.value)


def test_camera(broken, clip):
    name, b = broken
    _, backend, text = DEFECTS[name]
    proc = run_cli("camera", b, "--source", clip, "--backend", backend, "--max-frames", "2")
    assert_one_line_error(proc, 2, text)


def test_bench(broken, tmp_path):
    name, b = broken
    _, backend, text = DEFECTS[name]
    if name.startswith("fewer labels"):  # bench reads the split first: its labels no longer fit
        text = "split.json lists label 'red', which is not one of the bundle's labels"
    out = tmp_path / "report"
    proc = run_cli(
        "bench",
        b,
        "--backends",
        f"torch,{backend}",
        "--batch-sizes",
        "1",
        "--runs",
        "2",
        "--out",
        out,
    )
    assert_one_line_error(proc, 2, text)
    if name == "edited model.onnx":  # the report exists and shows the refusal, as the console does
        md = (out / "report.md").read_text()
        assert "refused" in md and "was modified after it was recorded" in md
        assert "refused" in proc.stdout and "modified" in proc.stdout


def test_trust_modified_runs_an_edited_artifact_loudly(good, tmp_path):
    b = copy_bundle(good, tmp_path / "b")
    _flip_byte(b / "model.onnx", at=-40)  # in the metadata tail: the model still loads
    image = json.loads((good / "split.json").read_text())
    path = Path(image["root"]) / image["valid"][0][0]
    proc = run_cli("predict", b, path, "--backend", "onnx", "--trust-modified", "--json")
    if proc.returncode == 0:
        assert "warning" in proc.stderr and "modified" in proc.stderr
        assert json.loads(proc.stdout.splitlines()[0])["top"]
    else:  # the flipped byte broke the protobuf: still one line, no traceback
        assert_one_line_error(proc, 2, "ONNX Runtime cannot load")
