"""`edgeft compare --jobs N`: runs in N processes give the serial run's numbers (same seeds,
same threads per run), and a parallel comparison resumes like a serial one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import MOBILENET_V2_WEIGHTS, make_color_dataset, needs_assets, run_cli


@pytest.mark.slow
@needs_assets(MOBILENET_V2_WEIGHTS)
def test_jobs_2_gives_the_serial_numbers_and_resumes(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=8, size=32)
    common = ["--data", data, "--arch", "mobilenet_v2", "--strategies", "head,full,scratch",
              "--epochs", "2", "--size", "32", "--batch-size", "8",
              "--weights", MOBILENET_V2_WEIGHTS]  # fmt: skip
    # A run's numbers depend on its seeds and its thread count: compare at 1 thread per run.
    serial = run_cli("compare", *common, "--out", tmp_path / "s", "--jobs", "1", "--threads", "1")
    assert serial.returncode == 0, serial.stderr[-2000:]
    par = run_cli("compare", *common, "--out", tmp_path / "p", "--jobs", "2", "--threads", "1")
    assert par.returncode == 0, par.stderr[-2000:]
    assert "in 2 processes (1 thread each)" in par.stdout
    s = json.loads((tmp_path / "s" / "compare.json").read_text())
    p = json.loads((tmp_path / "p" / "compare.json").read_text())
    assert [r["name"] for r in p["runs"]] == [r["name"] for r in s["runs"]]  # plan order
    assert p["jobs"] == 2 and p["threads_per_run"] == s["threads_per_run"] == [1]
    for a, b in zip(s["runs"], p["runs"], strict=True):
        assert abs(a["accuracy"] - b["accuracy"]) <= 1e-6, a["name"]
        ra = np.load(tmp_path / "s" / "runs" / a["name"] / "reference.npz")
        rb = np.load(tmp_path / "p" / "runs" / b["name"] / "reference.npz")
        assert np.abs(ra["probs"] - rb["probs"]).max() <= 1e-6, a["name"]
    again = run_cli("compare", *common, "--out", tmp_path / "p", "--jobs", "2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "p" / "compare.json").read_text())["reused_runs"] == 3


def test_bad_jobs_and_threads(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=32)
    for args, msg in ((["--jobs", "0"], "--jobs must be"), (["--threads", "0"], "--threads must")):
        p = run_cli("compare", "--data", data, "--arch", "resnet18", "--out", tmp_path / "o", *args)
        assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr
