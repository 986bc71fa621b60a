"""Calibration images for INT8: real images, sampled across classes, through the bundle's
own preprocessing.

Where they come from:

* ``--calib-data DIR``: a folder of class folders (sampled stratified across them) or a
  flat folder of images (sampled at random);
* otherwise the training images the bundle records in ``split.json`` (stratified by label).

Validation images are never used for calibration: they measure the result. Unreadable files
are skipped and counted; a folder with no readable image is an error. Asking for more
images than there are uses all of them, and the record says so.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeft.data import scan_class_folders
from edgeft.errors import UserError
from edgeft.images import ImageError, is_image_file, load_rgb
from edgeft.preprocess import Preprocessing, image_to_input

DEFAULT_COUNT = 200


@dataclass
class CalibrationSet:
    """Preprocessed calibration inputs and where they came from.

    Attributes:
        x: float32 ``(N, 3, H, W)``, normalised with the bundle's mean/std (what the FP32
            model takes; convert with :func:`edgeft.parity.fold_input` for folded graphs).
        paths: the images used, in order.
        source: ``"bundle training images"`` or the folder given.
        requested: the count asked for; ``available``: candidate files found.
        note: a sentence for the user and the record (e.g. "asked for 500, used all 160").
    """

    x: np.ndarray
    paths: list[str]
    source: str
    requested: int
    available: int
    per_class: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""

    def fingerprint(self) -> str:
        """sha256 of the chosen files' paths and sizes (changes when the set changes)."""
        h = hashlib.sha256()
        for p in self.paths:
            path = Path(p)
            size = path.stat().st_size if path.exists() else -1
            h.update(f"{p}\0{size}\0".encode())
        return h.hexdigest()

    def record(self) -> dict:
        return {
            "source": self.source,
            "requested": self.requested,
            "used": len(self.paths),
            "available": self.available,
            "per_class": self.per_class,
            "skipped": len(self.skipped),
            "fingerprint": self.fingerprint()[:16],
            "note": self.note,
        }


def _folder_candidates(folder: Path) -> list[tuple[Path, str | None]]:
    """Class folders (through the one scanner, :func:`edgeft.data.scan_class_folders`) and
    loose images directly in ``folder``."""
    if not folder.exists():
        raise UserError(
            f"--calib-data {folder} does not exist: pass a folder of images or of class folders"
        )
    if not folder.is_dir():
        raise UserError(f"--calib-data {folder} is not a folder")
    has_classes = any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())
    items: list[tuple[Path, str | None]] = []
    if has_classes:
        items += scan_class_folders(folder, "--calib-data", allow_empty=True)
    items += [
        (p, None) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
    ]
    if not items:
        raise UserError(
            f"--calib-data {folder} is empty: put calibration images (or class folders of them) in it"
        )
    return items


def stratified_order(
    items: list[tuple[Path, str | None]], seed: int = 0
) -> list[tuple[Path, str | None]]:
    """All items, reordered so any prefix is balanced across labels: each label's items are
    shuffled (seeded), then taken round-robin."""
    rng = random.Random(seed)
    by_label: dict = {}
    for path, label in items:
        by_label.setdefault(label or "", []).append(path)
    queues = []
    for label in sorted(by_label):
        paths = sorted(by_label[label])
        rng.shuffle(paths)
        queues.append((label, paths))
    out = []
    depth = max(len(p) for _, p in queues)
    for i in range(depth):
        for label, paths in queues:
            if i < len(paths):
                out.append((paths[i], label or None))
    return out


def _candidates(bundle, calib_data) -> tuple[list[tuple[Path, str | None]], str]:
    if calib_data is not None:
        folder = Path(calib_data).expanduser().resolve()
        return _folder_candidates(folder), str(folder)
    train = bundle.split()["train"]
    candidates = [(Path(p), label) for p, label in train if Path(p).is_file()]
    if not candidates:
        where = train[0][0] if train else bundle.path / "split.json"
        raise UserError(
            f"the bundle's training images are gone (e.g. {where}): pass calibration images "
            "with --calib-data DIR"
        )
    return candidates, "bundle training images (split.json)"


def load_calibration(
    bundle,
    pp: Preprocessing,
    count: int = DEFAULT_COUNT,
    calib_data=None,
    seed: int = 0,
    progress=None,
) -> CalibrationSet:
    """Pick and preprocess ``count`` calibration images (see the module docstring).

    Args:
        bundle: the :class:`edgeft.bundle.Bundle`.
        pp: its preprocessing (the inputs are normalised with mean/std).
        count: how many to use; more than available uses all and says so.
        calib_data: a folder to sample from instead of the bundle's training images.
        progress: optional callable, called once per image tried.

    Raises:
        UserError: bad ``count``; a missing, empty or unreadable folder; the bundle's
            training images are gone and no folder was given.
    """
    if count < 1:
        raise UserError(f"--calib-count must be at least 1, not {count}")
    candidates, source = _candidates(bundle, calib_data)
    ordered = stratified_order(candidates, seed)
    xs, paths, skipped, per_class = [], [], [], {}
    for path, label in ordered:
        if len(xs) >= count:
            break
        if progress:
            progress()
        if not is_image_file(path):
            skipped.append((str(path), "not an image file"))
            continue
        try:
            xs.append(image_to_input(load_rgb(path, pp.exif_transpose), pp, normalize=True))
        except ImageError as exc:
            skipped.append((str(path), str(exc)))
            continue
        paths.append(str(path))
        per_class[label or "(unlabelled)"] = per_class.get(label or "(unlabelled)", 0) + 1
    if not xs:
        raise UserError(
            f"no readable calibration image in {source} ({len(skipped)} files skipped, e.g. "
            f"{skipped[0][0]}: {skipped[0][1]})"
        )
    note = ""
    if len(xs) < count:
        note = f"asked for {count} calibration images, only {len(xs)} readable are available: using all {len(xs)}"
    return CalibrationSet(
        np.stack(xs), paths, source, count, len(ordered), per_class, skipped, note
    )
