"""Fixtures of the camera tests: exported bundles shared by the session, and a Python
environment set up like a Jetson's (system OpenCV with GStreamer, pip ONNX Runtime)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import tomllib

from tests.camera_support import SYSTEM_PYTHON, export_onnx, system_opencv_reason, tiny_bundle
from tests.conftest import ROOT, run_cli


def _export_with_golden(bundle, int8: bool = True) -> None:
    """FP32 ONNX through export's parity check (which records the golden images the
    runtime's self-test reproduces), then INT8 without it (see export_onnx)."""
    proc = run_cli("export", bundle, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    if int8:
        export_onnx(bundle, int8=True, onnx=False)


@pytest.fixture(scope="session")
def cam_bundle(tmp_path_factory):
    """A tiny colour bundle with ONNX, ONNX INT8 and golden images (read-only)."""
    b = tiny_bundle(tmp_path_factory.mktemp("cam_a"))
    _export_with_golden(b)
    return b


@pytest.fixture(scope="session")
def cam_bundle_retrained(tmp_path_factory):
    """The same task retrained (another seed, two epochs): other weights, same labels;
    ONNX FP32 with golden images."""
    b = tiny_bundle(tmp_path_factory.mktemp("cam_b"), seed=1, epochs=2)
    _export_with_golden(b, int8=False)  # the swap tests run FP32 ONNX
    return b


@pytest.fixture(scope="session")
def eurosat_onnx(eurosat_bundle, tmp_path_factory):
    """The real EuroSAT bundle (read-only) exported to ONNX FP32 with golden images: a model
    whose answers differ from image to image, for comparisons that mean something."""
    b = tmp_path_factory.mktemp("eurosat_onnx") / "eurosat"
    shutil.copytree(eurosat_bundle, b)
    _export_with_golden(b, int8=False)
    return b


def runtime_requirements() -> list[str]:
    """What a device installs with edgeft's ``runtime`` extra, less pip's OpenCV (a Jetson
    uses JetPack's, built with GStreamer), read from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["runtime"]]
    return [r for r in reqs if not r.lower().startswith("opencv")]


@pytest.fixture(scope="session")
def jetson_python(tmp_path_factory):
    """A venv of the system python 3 made like a Jetson's: ``--system-site-packages`` (so
    Debian's python3-opencv 4.6, built with GStreamer, and its numpy are the ones used)
    plus edgeft's runtime requirements from pip, without pip's OpenCV. Returns
    ``(python, env)``; edgeft itself comes from this checkout (PYTHONPATH)."""
    reason = system_opencv_reason()
    if reason:
        pytest.skip(reason)
    venv = tmp_path_factory.mktemp("jetson") / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*pip, "-c", str(ROOT / ".ci" / "constraints.txt"), *runtime_requirements()],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    check = subprocess.run(
        [str(py), "-c", "import cv2, onnxruntime, edgeft.runtime; print(cv2.__file__)"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.startswith("/usr/lib/python3/"), f"not the system OpenCV: {check.stdout}"
    return py, env
