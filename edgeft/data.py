"""Read a labelled image dataset and split it, without torch.

Layouts, detected in this order:
- a CSV file of ``path,label`` rows (an optional header; an optional third column
  ``split`` with ``train``/``valid``); paths are relative to the CSV's folder;
- ``DIR/train/<class>/`` + ``DIR/valid/<class>/`` (or ``val/``): the given split;
- ``DIR/<class>/``: folder per class, split stratified by ``valid_pct`` with ``seed``;
- with ``valid_dir``: ``DIR/<class>/`` trains, ``VALID_DIR/<class>/`` validates.

Every image is decoded once while scanning (within the pixel limit of
:mod:`edgeft.images`); unreadable, oversized and non-image files are skipped and counted.
The split and a fingerprint of the data are recorded in the bundle.

This is the one labelled-folder scanner: ``finetune``, ``export --calib-data``, ``export
--data`` and ``bench --data`` read class folders through :func:`scan_class_folders` and
:func:`labelled_folder`, so a folder means the same thing to each. Folder names and CSV
labels go through :func:`edgeft.labels.check_labels`. Symbolic links: a class folder
that links back to the data root (or above it) is refused, folder links inside a class
are not followed, and a file reachable under two labels is an error.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import UserError
from edgeft.images import ImageError, is_image_file, load_rgb
from edgeft.labels import check_labels
from edgeft.scan import LabelledSet, class_dirs, labelled_folder, scan_class_folders

__all__ = [
    "Dataset",
    "LabelledSet",
    "Sample",
    "labelled_folder",
    "load_dataset",
    "scan_class_folders",
]


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    path: Path
    label: str


@dataclass
class Dataset:
    """A scanned dataset with its train/valid split."""

    root: Path
    layout: str
    labels: list[str]
    train: list[Sample]
    valid: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)  # warnings for the user and the record

    def counts(self, split: str) -> dict[str, int]:
        c = Counter(s.label for s in getattr(self, split))
        return {label: c.get(label, 0) for label in self.labels}

    def fingerprint(self) -> str:
        """sha256 over every file's relative path, label, split and content."""
        h = hashlib.sha256()
        for split in ("train", "valid"):
            for s in sorted(getattr(self, split), key=lambda s: str(s.path)):
                h.update(f"{split}\0{self.rel(s.path)}\0{s.label}\0".encode())
                h.update(_file_digest(s.path))
        return h.hexdigest()

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def split_record(self) -> dict:
        """The split as stored in the bundle (paths relative to ``root``)."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "train": [[self.rel(s.path), s.label] for s in self.train],
            "valid": [[self.rel(s.path), s.label] for s in self.valid],
        }


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.digest()


def _read_csv(path: Path) -> list[tuple[Path, str, str | None]]:
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].startswith("#"):
                continue
            if i == 0 and row[0].strip().lower() in ("path", "file", "filename", "image", "fname"):
                continue  # header
            if len(row) < 2:
                raise UserError(f"{path} line {i + 1}: expected path,label[,split]")
            split = row[2].strip().lower() if len(row) > 2 and row[2].strip() else None
            if split not in (None, "train", "valid", "val"):
                raise UserError(
                    f"{path} line {i + 1}: split must be train or valid, not {row[2]!r}"
                )
            rows.append(
                (path.parent / row[0].strip(), row[1].strip(), "valid" if split == "val" else split)
            )
    check_labels(sorted({label for _, label, _ in rows}), f"{path}")
    if not rows:
        raise UserError(f"{path} lists no images: expected rows of path,label")
    return rows


def _verify(items, progress=None):
    """Decode every image; return the readable ones and the skipped (path, reason)."""
    good, skipped = [], []
    for entry in items:
        path = entry[0]
        if not is_image_file(path):
            skipped.append((str(path), "not an image file"))
        else:
            try:
                load_rgb(path)
                good.append(entry)
            except ImageError as exc:
                skipped.append((str(path), str(exc)))
        if progress:
            progress()
    return good, skipped


def stratified_split(items: list[tuple[Path, str]], valid_pct: float, seed: int):
    """Split per class: ``round(n * valid_pct)`` images of each class (at least one when the
    class has two or more) go to validation, chosen by a seeded shuffle."""
    rng = random.Random(seed)
    by_class: dict[str, list[Path]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    train, valid = [], []
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        rng.shuffle(paths)
        # at least one image each side when the class has two or more
        n_valid = round(len(paths) * valid_pct)
        n_valid = min(max(n_valid, 1), len(paths) - 1) if len(paths) >= 2 else 0
        valid += [Sample(p, label) for p in paths[:n_valid]]
        train += [Sample(p, label) for p in paths[n_valid:]]
    return train, valid


def _layout(root: Path, valid_dir) -> tuple[list, dict, str, Path]:
    """``(items, given_split, layout, root_dir)`` of a dataset (see the module doc)."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise UserError(
                f"data {root} is a file but not a CSV: pass a folder or a .csv of path,label"
            )
        rows = _read_csv(root)
        return (
            [(p, label) for p, label, _ in rows],
            {p: s for p, _, s in rows if s},
            "csv",
            root.parent,
        )
    if valid_dir is not None:
        vroot = Path(valid_dir).expanduser().resolve()
        if not vroot.is_dir():
            raise UserError(f"--valid-dir {vroot} does not exist or is not a folder")
        t = scan_class_folders(root, "data folder")
        v = scan_class_folders(vroot, "validation folder")
        split = {p: "train" for p, _ in t} | {p: "valid" for p, _ in v}
        return t + v, split, "train+valid-dir", root
    if not root.is_dir():
        raise UserError(f"data {root} is not a folder")
    sub = {p.name.lower(): p for p in class_dirs(root)}
    vname = "valid" if "valid" in sub else "val" if "val" in sub else None
    if "train" in sub and vname:
        t = scan_class_folders(sub["train"], "training folder")
        v = scan_class_folders(sub[vname], "validation folder")
        split = {p: "train" for p, _ in t} | {p: "valid" for p, _ in v}
        return t + v, split, f"train/{vname}", root
    return scan_class_folders(root, "data folder"), {}, "folder-per-class", root


def _check_classes(root: Path, items, good, skipped) -> list[str]:
    if not good:
        raise UserError(
            f"no readable images in {root} ({len(skipped)} files skipped, e.g. {skipped[0][1]})"
        )
    labels = sorted({label for _, label in good})
    if len(labels) < 2:
        raise UserError(
            f"{root} has only one class with readable images ({labels[0]}): a classifier needs at least two"
        )
    empty = sorted({label for _, label in items} - set(labels))
    if empty:
        raise UserError(
            f"class {empty[0]} has no readable images in {root}: fix or remove its files"
        )
    return labels


def load_dataset(
    data: str | os.PathLike,
    valid_pct: float = 0.2,
    seed: int = 0,
    valid_dir: str | os.PathLike | None = None,
    progress=None,
) -> Dataset:
    """Scan, verify and split a dataset.

    Args:
        data: a folder (see the module doc for layouts) or a CSV file.
        valid_pct: share of each class held out for validation when the layout gives no split.
        seed: seed of that split.
        valid_dir: a separate folder-per-class validation set.
        progress: optional callable invoked once per file checked (for a progress bar).

    Raises:
        UserError: missing or empty folder, fewer than two classes, an empty class folder,
            a bad label, or no readable images left.
    """
    root = Path(data).expanduser().resolve()
    if not root.exists():
        raise UserError(
            f"data {root} does not exist: pass a folder of class folders or a CSV of path,label"
        )
    if not 0.0 < valid_pct < 1.0:
        raise UserError(f"--valid-pct must be between 0 and 1 (exclusive), not {valid_pct}")
    items, given_split, layout, root_dir = _layout(root, valid_dir)
    good, skipped = _verify(items, progress)
    labels = _check_classes(root, items, good, skipped)
    if given_split and all(p in given_split for p, _ in good):
        train = [Sample(p, lb) for p, lb in good if given_split[p] == "train"]
        valid = [Sample(p, lb) for p, lb in good if given_split[p] == "valid"]
    else:
        train, valid = stratified_split(good, valid_pct, seed)
    if not valid:
        raise UserError(f"no validation images in {root}: add images or raise --valid-pct")
    if not train:
        raise UserError(f"no training images in {root}")
    missing = sorted(set(labels) - {s.label for s in train})
    if missing:
        raise UserError(f"class {missing[0]} has no training images in {root}")
    notes = [
        f"class {label!r} has no validation image: its accuracy cannot be measured; add images "
        "(two or more per class) or give a validation folder"
        for label in sorted(set(labels) - {s.label for s in valid})
    ]
    return Dataset(root_dir.resolve(), layout, labels, train, valid, skipped, notes)
