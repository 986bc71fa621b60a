"""The live view in a real browser: Debian's Chromium, driven by Playwright (pip's
``playwright``, no browser download), against `edgeft camera --serve` classifying a looping
video. The page loads, the MJPEG image updates, the numbers change; the screenshot is kept
in ``logs/test-output/`` (git-ignored; ``$EDGEFT_TEST_OUTPUT`` overrides)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.camera_support import Lines, camera_proc, free_port, wait_for, write_lossless_video
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it off this machine's closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="no chromium (run .ci/media-test-setup)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="pip's playwright is not installed (dev extra)",
    ),
]

# Draws the <img> into a canvas and sums its pixels: changes when a new frame is shown.
CHECKSUM = """() => {
  const img = document.getElementById('view');
  if (!img.naturalWidth) return null;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 7) s = (s * 31 + d[i]) % 1000000007;
  return [c.width, c.height, s];
}"""


def output_dir() -> Path:
    out = Path(os.environ.get("EDGEFT_TEST_OUTPUT", ROOT / "logs" / "test-output"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def video(cam_bundle, tmp_path_factory):
    """Colour frames that change every frame (so the image visibly updates), 15 fps."""
    rng = np.random.default_rng(0)
    base = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    frames = [
        np.clip(rng.normal(base[i % 3], 30, (120, 160, 3)), 0, 255).astype(np.uint8)
        for i in range(45)
    ]
    return write_lossless_video(tmp_path_factory.mktemp("view") / "loop.avi", frames, fps=15)


def test_live_view_in_chromium(cam_bundle, video, tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    lines = Lines(
        camera_proc(
            cam_bundle, "--source", video, "--loop", "--realtime", "--serve", f"127.0.0.1:{port}"
        )
    )
    try:
        assert wait_for(lambda: len(lines.out) >= 5, timeout=60), lines.err
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 640})
                page.goto(f"http://127.0.0.1:{port}/")
                _check_page(page, tmp_path)
            finally:
                browser.close()
        assert lines.finish() == 0, lines.err
    finally:
        if lines.proc.poll() is None:
            lines.proc.kill()
    assert not lines.has_err("Traceback")


def _check_page(page, tmp_path) -> None:
    page.wait_for_function("() => /^\\d+$/.test(document.getElementById('frame').textContent)")
    page.wait_for_function("() => document.querySelectorAll('#chart polyline').length === 4")
    first = (page.text_content("#frame"), page.evaluate(CHECKSUM))
    assert page.text_content("#status") == "ok"
    assert page.text_content("#backend") == "onnx-int8" and len(page.text_content("#sha")) == 12
    assert page.locator("#top li").count() == 3 and "%" in page.text_content("#top li")
    time.sleep(1.5)
    page.wait_for_function(f"() => document.getElementById('frame').textContent !== '{first[0]}'")
    second = (page.text_content("#frame"), page.evaluate(CHECKSUM))
    assert int(second[0]) > int(first[0])  # the numbers change
    assert first[1] and second[1] and first[1][:2] == [160, 120]  # the frames as read
    assert second[1][2] != first[1][2]  # the image updates
    fps = float(page.text_content("#fps"))
    assert 5 < fps < 30  # a 15 fps source
    legend = page.text_content("#legend")
    assert all(stage in legend for stage in ("capture", "preprocess", "inference", "post"))
    shot = output_dir() / "camera-live-view.png"
    page.screenshot(path=str(tmp_path / shot.name), full_page=True)
    shutil.copyfile(tmp_path / shot.name, shot)
    assert shot.stat().st_size > 10_000
