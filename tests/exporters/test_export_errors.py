"""``edgeft export`` on bad input: one line, the right exit code, and the bundle untouched.

Uses a tiny real bundle (colour images, MobileNetV2 at 32 px) trained once per module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import assert_one_line_error, run_cli
from tests.export_support import copy_bundle, make_tiny_bundle, manifest, partials, sha256


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    """The tiny bundle with its FP32 ONNX exported (read-only: copy before changing it)."""
    b = copy_bundle(tiny, tmp_path_factory.mktemp("tiny_onnx") / "b")
    proc = run_cli("export", b, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return b


@pytest.fixture
def bundle(tiny, tmp_path):
    return copy_bundle(tiny, tmp_path / "b")


def test_missing_bundle(tmp_path):
    assert_one_line_error(run_cli("export", tmp_path / "nope"), 2, "does not exist")


def test_bundle_from_a_newer_schema(bundle):
    mf = manifest(bundle)
    mf["schema_version"] = 99
    (bundle / "bundle.json").write_text(json.dumps(mf))
    assert_one_line_error(run_cli("export", bundle), 2, "schema version 99")


@pytest.mark.parametrize("opset", ["99", "5"])
def test_opset_the_exporter_cannot_produce(bundle, opset):
    line = assert_one_line_error(
        run_cli("export", bundle, "--opset", opset), 2, f"--opset {opset} cannot be produced"
    )
    assert "opsets 11-" in line
    assert "artifacts" not in manifest(bundle) or not manifest(bundle)["artifacts"]


def test_int8_needs_a_per_channel_opset(bundle):
    assert_one_line_error(
        run_cli("export", bundle, "--int8", "--opset", "12"), 2, "--opset 13 or newer"
    )


@pytest.mark.parametrize(
    "args, contains",
    [
        (["--fp16"], "--fp16 is a TensorRT precision"),
        (["--dla-core", "0"], "--dla-core applies to TensorRT"),
        (
            ["--int8", "--calib-method", "kl"],
            "--calib-method must be one of minmax, entropy, percentile",
        ),
        (["--int8", "--calib-count", "0"], "--calib-count must be at least 1"),
        (["--int8", "--max-accuracy-drop", "-1"], "--max-accuracy-drop must be >= 0"),
    ],
)
def test_bad_option_combinations(bundle, args, contains):
    assert_one_line_error(run_cli("export", bundle, *args), 2, contains)


def test_unwritable_output(bundle):
    (bundle / "model.onnx").mkdir()  # something that is not a file sits where the artifact goes
    assert_one_line_error(run_cli("export", bundle), 2, "is not a file")
    if os.geteuid() != 0:  # root writes through permissions
        (bundle / "model.onnx").rmdir()
        bundle.chmod(0o555)
        try:
            assert_one_line_error(run_cli("export", bundle), 2, "cannot write to bundle")
        finally:
            bundle.chmod(0o755)


def test_existing_artifact_needs_force(tiny_onnx, tmp_path):
    b = copy_bundle(tiny_onnx, tmp_path / "b")
    before = (b / "bundle.json").read_bytes()
    assert_one_line_error(run_cli("export", b), 2, "pass --force")
    assert (b / "bundle.json").read_bytes() == before


def test_empty_and_corrupt_calibration_folders(bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("export", bundle, "--int8", "--calib-data", empty), 2, "is empty")
    corrupt = tmp_path / "corrupt"
    (corrupt / "red").mkdir(parents=True)
    for i in range(3):
        (corrupt / "red" / f"x{i}.jpg").write_bytes(b"not a jpeg at all")
    line = assert_one_line_error(
        run_cli("export", bundle, "--int8", "--calib-data", corrupt),
        2,
        "no readable calibration image",
    )
    assert "3 files skipped" in line
    assert "onnx-int8" not in manifest(bundle).get("artifacts", {})
    assert not partials(bundle)


def test_calib_count_larger_than_available_uses_all_and_says_so(tiny_onnx, tmp_path):
    b = copy_bundle(tiny_onnx, tmp_path / "b")
    proc = run_cli("export", b, "--int8", "--calib-count", "500")
    assert proc.returncode == 0, proc.stderr
    assert (
        "asked for 500 calibration images, only 24 readable are available: using all 24"
        in " ".join(proc.stdout.split())
    )
    cal = manifest(b)["artifacts"]["onnx-int8"]["build"]["calibration"]
    assert (cal["requested"], cal["used"]) == (500, 24)
    assert cal["per_class"] == {"blue": 8, "green": 8, "red": 8}  # stratified: every training image


def test_missing_validation_images_ask_for_data_and_data_works(tiny, tmp_path):
    b = copy_bundle(tiny, tmp_path / "b")
    split = json.loads((b / "split.json").read_text())
    split["root"] = str(tmp_path / "gone")  # as if the training data had moved
    (b / "split.json").write_text(json.dumps(split))
    assert_one_line_error(
        run_cli("export", b), 2, "pass the labelled validation folder with --data"
    )
    from tests.conftest import make_color_dataset

    data = make_color_dataset(tmp_path / "valid", n_per_class=2, seed=7)
    proc = run_cli("export", b, "--data", data, "--quiet")
    assert proc.returncode == 0, proc.stderr
    parity = manifest(b)["artifacts"]["onnx"]["parity"]
    assert parity["n"] == 6 and parity["images"] == str(data) and parity["agreement"] == 1.0
    # --data means what it means to bench: class folders that are not labels are left out
    # and counted (one scanner, edgeft.data.labelled_folder); none left is an error.
    other = make_color_dataset(tmp_path / "other", n_per_class=1, classes=("red", "yellow"))
    proc = run_cli("export", b, "--force", "--data", other)
    assert proc.returncode == 0, proc.stderr
    assert "yellow" in proc.stdout and "not labels of the bundle" in proc.stdout
    parity = manifest(b)["artifacts"]["onnx"]["parity"]
    assert parity["n"] == 1 and parity["unknown_labels"] == {"yellow": 1}
    bad = make_color_dataset(tmp_path / "bad", n_per_class=1, classes=("yellow",))
    assert_one_line_error(
        run_cli("export", b, "--force", "--data", bad),
        2,
        "is a label of the bundle",
    )


def test_int8_rebuilds_a_changed_fp32_source(tiny_onnx, tmp_path):
    b = copy_bundle(tiny_onnx, tmp_path / "b")
    (b / "model.onnx").write_bytes(b"garbage")  # the recorded file no longer matches its sha256
    proc = run_cli("export", b, "--int8", "--no-check")
    assert proc.returncode == 0, proc.stderr
    mf = manifest(b)
    assert sha256(b / "model.onnx") == mf["artifacts"]["onnx"]["sha256"]
    assert mf["artifacts"]["onnx-int8"]["source"]["sha256"] == mf["artifacts"]["onnx"]["sha256"]
    assert mf["artifacts"]["onnx-int8"]["parity"]["checked"] is False


def test_interrupting_an_export_leaves_the_previous_state(tiny_onnx, tmp_path):
    b = copy_bundle(tiny_onnx, tmp_path / "b")
    manifest_before = (b / "bundle.json").read_bytes()
    onnx_before = sha256(b / "model.onnx")
    for sig in (signal.SIGINT, signal.SIGKILL):
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeft", "export", str(b), "--force", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 300
        # Wait until the new model is being written (staged under a temporary name), then stop it.
        while time.time() < deadline and proc.poll() is None:
            staged = [p for p in b.glob(".edgeft-export-*/model.onnx") if p.stat().st_size > 0]
            if staged:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"export ended before it could be interrupted: {proc.communicate()}"
        )
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if sig == signal.SIGINT and proc.returncode == 0:
            # On a loaded machine the signal can land in the commit, where Ctrl-C is held
            # back by design: the export then completes, consistently, and is not the case
            # this test is after, so it says so rather than passing on it.
            mf = manifest(b)
            assert mf["artifacts"]["onnx"]["sha256"] == sha256(b / "model.onnx"), err
            pytest.skip("SIGINT landed in the held-back commit on this loaded machine")
        if sig == signal.SIGINT:
            assert proc.returncode == 130, err
            assert "interrupted" in err and "Traceback" not in err
            assert not partials(b)  # cleaned up on the way out
        else:
            assert proc.returncode == -signal.SIGKILL
        assert (b / "bundle.json").read_bytes() == manifest_before
        assert sha256(b / "model.onnx") == onnx_before


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one
def test_a_ctrl_c_a_finalizer_swallowed_still_stops_the_commit(tiny_onnx, tmp_path, monkeypatch):
    """Python swallows a KeyboardInterrupt raised while a finalizer runs ("Exception ignored
    in ..."): the export goes on, and must still not commit what it built after the signal."""
    import gc

    import exporters.onnx_export as onnx_export
    from exporters.options import ExportOptions
    from exporters.pipeline import export_bundle

    b = copy_bundle(tiny_onnx, tmp_path / "b")
    manifest_before = (b / "bundle.json").read_bytes()
    onnx_before = sha256(b / "model.onnx")
    real_build = onnx_export.build

    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # handled on the next bytecode: this finalizer
            sum(range(1000))

    def build(request):
        SignalsWhenCollected()
        gc.collect()
        return real_build(request)  # still runs: the interrupt was swallowed

    monkeypatch.setattr(onnx_export, "build", build)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(ExportOptions(bundle=b, onnx=True, force=True, quiet=True))
    assert (b / "bundle.json").read_bytes() == manifest_before
    assert sha256(b / "model.onnx") == onnx_before
    assert not partials(b) and not list(b.glob(".edgeft-export-*"))


def test_leftovers_of_a_killed_export_are_swept(tiny_onnx, tmp_path):
    b = copy_bundle(tiny_onnx, tmp_path / "b")
    stale = [b / ".model-int8.onnx.k2j3.partial", b / ".bundle.json.x9.tmp"]
    for p in stale:
        p.write_bytes(b"half-written by an export killed with SIGKILL")
    proc = run_cli("export", b, "--force", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in stale) and not partials(b)
    assert manifest(b)["artifacts"]["onnx"]["sha256"] == sha256(b / "model.onnx")
