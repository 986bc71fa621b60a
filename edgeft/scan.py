"""The one labelled-folder scanner: what ``<root>/<label>/<images>`` means, for every command.

``finetune`` (through :mod:`edgeft.data`), ``export --calib-data``, ``export --data`` and
``bench --data`` read class folders here, so a folder means the same thing to each. Folder
names go through :func:`edgeft.labels.check_labels`. Symbolic links: a class folder that
links back to the data root (or above it) is refused, folder links inside a class are not
followed, and a file reachable under two labels is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import UserError
from edgeft.images import is_image_file
from edgeft.labels import check_labels


def class_dirs(root: Path) -> list[Path]:
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise UserError(f"cannot read {root}: {exc.strerror or exc}") from None
    return [p for p in entries if p.is_dir() and not p.name.startswith(".")]


def _files_in(cdir: Path) -> list[Path]:
    """Every non-hidden file under ``cdir``; folder symlinks inside it are not followed
    (``os.walk`` default), so no link can make files appear twice or loop."""
    out = []
    for dirpath, dirnames, filenames in os.walk(cdir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return [p for p in out if p.is_file()]


def _check_class_dir(cdir: Path, root: Path) -> None:
    if not cdir.is_symlink():
        return
    target = cdir.resolve()
    real_root = root.resolve()
    if target == real_root or real_root.is_relative_to(target) or target.is_relative_to(real_root):
        raise UserError(
            f"class folder {cdir} is a link to {target}, inside or above the data folder: "
            "it would count the same images twice under another label; remove the link"
        )


def scan_class_folders(root: Path, what: str, allow_empty: bool = False) -> list[tuple[Path, str]]:
    """``(file, label)`` for every file of every class folder ``root/<label>/``.

    Raises:
        UserError: no class folders, an empty one (unless ``allow_empty``), a bad label
            (:func:`edgeft.labels.check_labels`), a class folder linking into the data, or
            one file reachable under two labels.
    """
    classes = class_dirs(root)
    if not classes:
        raise UserError(
            f"{what} {root} holds no class folders: expected {root}/<class>/<image files>"
        )
    check_labels([c.name for c in classes], f"{what} {root}")
    items, seen = [], {}
    for cdir in classes:
        _check_class_dir(cdir, root)
        files = _files_in(cdir)
        if not files and not allow_empty:
            raise UserError(f"class folder {cdir} holds no files: add images or remove the folder")
        for f in files:
            real = f.resolve()
            if real in seen and seen[real] != cdir.name:
                raise UserError(
                    f"{f} is the same file as one in class {seen[real]!r}: an image can have "
                    "only one label; remove the duplicate or the link"
                )
            seen[real] = cdir.name
        items += [(p, cdir.name) for p in files]
    return items


@dataclass
class LabelledSet:
    """Labelled images for a bundle's classes (``bench --data``, ``export --data``).

    Attributes:
        samples: ``(path, label)`` pairs whose label the bundle knows.
        source: where they came from, for reports.
        unknown: class folders whose name is not a label of the bundle -> image count.
        ignored: files skipped because their extension is not an image's.
    """

    samples: list[tuple[Path, str]]
    source: str
    unknown: dict[str, int] = field(default_factory=dict)
    ignored: int = 0


def labelled_folder(data: Path, labels: list[str], what: str = "--data") -> LabelledSet:
    """The images of ``data``'s class folders named after ``labels``.

    A ``valid/`` (or ``val/``) subfolder is used when ``data`` itself holds no class folder
    named after a label. Class folders with other names are counted and left out.

    Raises:
        UserError: the folder is missing, holds no class folders, or no image of a label.
    """
    data = Path(data).expanduser()
    if not data.is_dir():
        raise UserError(
            f"{what} {data} is not a folder: pass a folder of class folders (<label>/<images>)"
        )
    known = set(labels)
    root = data
    if not any(d.name in known for d in class_dirs(data)):
        for sub in ("valid", "val"):
            if (data / sub).is_dir() and any(d.name in known for d in class_dirs(data / sub)):
                root = data / sub
                break
    items = scan_class_folders(root, f"{what} folder", allow_empty=True)
    samples, unknown, ignored = [], {}, 0
    for path, label in items:
        if not is_image_file(path):
            ignored += 1
        elif label in known:
            samples.append((path, label))
        else:
            unknown[label] = unknown.get(label, 0) + 1
    if not samples:
        some = ", ".join(labels[:6]) + (" ..." if len(labels) > 6 else "")
        if unknown:
            raise UserError(
                f"none of the class folders in {root} ({', '.join(sorted(unknown)[:6])}) is a label "
                f"of the bundle ({some}): name the folders after the bundle's labels"
            )
        raise UserError(f"no labelled images in {root}: expected {root}/<label>/<image files>")
    return LabelledSet(samples, str(root), unknown, ignored)
