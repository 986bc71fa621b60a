"""The main job's offline path: no assets and no network give one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_assets_and_no_network_is_one_line(tmp_path):
    # An unreachable proxy makes every download fail fast and the same way, online or not.
    env = dict(os.environ, EDGEFT_ASSETS=str(tmp_path / "no-assets"), NO_PROXY="", no_proxy="")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[var] = "http://127.0.0.1:9"
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.studies.pipeline", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline: no "), proc.stderr
    assert "set EDGEFT_ASSETS" in lines[0]
    assert not (out / "data" / "eurosat_download").exists()  # nothing half-downloaded
    assert not (out / "bundle").exists()
