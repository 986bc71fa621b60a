"""``--video OUT``: the frames the loop classified, with the top label drawn on them.

The file is written under a temporary name beside ``OUT`` and renamed when the run ends,
so an interrupted run never leaves a file that looks complete but is not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeft.errors import UserError

FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


def check_video_path(path: str | os.PathLike) -> Path:
    """Validate ``--video``: a known container in an existing, writable folder.

    Raises:
        UserError: unknown extension or unusable folder.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in FOURCC:
        raise UserError(f"--video {path}: use one of {', '.join(FOURCC)} as the extension")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"--video {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"--video {path}: cannot write to {parent}")
    return path


def draw_overlay(img: np.ndarray, record: dict, roi: tuple[int, int, int, int] | None = None):
    """Draw the ROI box and the top label (with its probability and inference time) on
    ``img`` in place (BGR uint8, contiguous); returns it."""
    import cv2

    if roi:
        x, y, w, h = roi
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 255, 255), 2)
    if record.get("top"):
        text = f"{record['top'][0]['label']} {record['top'][0]['prob']:.2f}"
    else:  # e.g. non-finite model outputs: the line says why
        text = record.get("error", "no result")[:40]
    lat = record.get("latency_ms", {}).get("inference")
    if lat is not None:
        text += f"  {lat:.1f} ms"
    scale = max(0.4, img.shape[0] / 720)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(scale * 1.5))
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    # white text on a black box stays readable on any frame (an outline drawn thicker is
    # wider than the text: OpenCV advances glyphs by the thickness too)
    x, y = 4, 4 + h
    cv2.rectangle(img, (x - 3, y - h - 3), (x + w + 3, y + base + 1), (0, 0, 0), cv2.FILLED)
    cv2.putText(img, text, (x, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


class VideoAnnotator:
    """Writes annotated frames; created lazily at the first frame (its size decides)."""

    def __init__(self, path: Path, fps: float, roi: tuple[int, int, int, int] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = fps if fps and fps > 0 else 15.0
        self.roi = roi
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray, record: dict) -> None:
        import cv2

        if self.writer is None:
            h, w = image.shape[:2]
            self.size = (w, h)
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise UserError(
                    f"cannot write video {self.path}: OpenCV has no encoder for "
                    f"{FOURCC[self.path.suffix.lower()]} here"
                )
        img = image if image.shape[1::-1] == self.size else cv2.resize(image, self.size)
        # a copy: the frame itself may still be read by --serve's stream
        img = draw_overlay(np.array(img[..., :3], order="C"), record, self.roi)
        self.writer.write(img)
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; returns its path (None if no frame)."""
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        self.tmp.unlink(missing_ok=True)
