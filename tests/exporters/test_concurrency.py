"""Two exports of one bundle at once: both end recorded (or one waits and then refuses with
one line), never a lost record, a crash or a shared temporary name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import tiny_bundle
from tests.export_support import copy_bundle, manifest, partials, sha256


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("conc"))


def _start(bundle, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "edgeft", "export", str(bundle), *args, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _both(bundle, a, b):
    procs = [_start(bundle, *a), _start(bundle, *b)]
    return [(p.wait(timeout=600), *p.communicate()) for p in procs]


def _every_file_recorded(bundle):
    mf = manifest(bundle)
    files = {rec["path"]: rec["sha256"] for rec in mf["artifacts"].values()}
    on_disk = {p.name for p in bundle.iterdir() if p.suffix in (".onnx", ".plan")}
    assert on_disk == set(files), (on_disk, set(files))
    for name, digest in files.items():
        assert sha256(bundle / name) == digest, name
    assert not partials(bundle)
    return mf


def test_int8_and_folded_at_once_both_end_recorded(tiny, tmp_path):
    b = copy_bundle(tiny, tmp_path / "b")
    results = _both(b, ["--int8", "--max-accuracy-drop", "100"], ["--onnx", "--fold-normalize"])
    for code, _, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    mf = _every_file_recorded(b)
    assert {"onnx", "onnx-int8", "onnx-folded"} <= set(mf["artifacts"])
    # the INT8 file was built from the FP32 ONNX that is recorded
    assert mf["artifacts"]["onnx-int8"]["source"]["sha256"] == mf["artifacts"]["onnx"]["sha256"]


def test_two_int8_exports_at_once(tiny, tmp_path):
    b = copy_bundle(tiny, tmp_path / "b")
    results = _both(
        b, ["--int8", "--max-accuracy-drop", "100"], ["--int8", "--max-accuracy-drop", "100"]
    )
    codes = sorted(code for code, _, _ in results)
    for _, _, err in results:
        assert "Traceback" not in err, err
    # one made it; the other waited for the lock, saw it, and refused with one line
    assert codes in ([0, 0], [0, 2]), results
    if codes == [0, 2]:
        refused = next(err for code, _, err in results if code == 2)
        lines = [ln for ln in refused.splitlines() if ln.startswith("edgeft:")]
        assert (
            lines[-1].startswith("edgeft: error:")
            and "already has the onnx-int8 artifact" in lines[-1]
        )
    _every_file_recorded(b)
