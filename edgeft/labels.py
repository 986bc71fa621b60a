"""What a class label may be, checked the same way for every data layout and every bundle.

A label names a class in ``bundle.json``, a folder in a labelled dataset (``<label>/``)
and a folder that ``edgeft bench --remote`` stages: it must be a plain, non-empty folder
name, so that no layout can turn it into a path elsewhere on disk.
"""

from __future__ import annotations

from edgeft.errors import UserError

_FORBIDDEN = ("/", "\\", "\0")


def label_problem(label: object) -> str | None:
    """Why ``label`` is not a valid class label, or None when it is."""
    if not isinstance(label, str):
        return f"{label!r} is not text"
    if not label.strip():
        return "an empty label"
    if label != label.strip():
        return f"{label!r} starts or ends with whitespace"
    if any(c in label for c in _FORBIDDEN) or label in (".", ".."):
        return f"{label!r} is not a plain folder name (no '/', '\\', '.', '..')"
    if any(ord(c) < 32 for c in label):
        return f"{label!r} contains control characters"
    return None


def check_labels(labels, where: str) -> list[str]:
    """Return ``labels`` as a list if each is valid and none repeats.

    Raises:
        UserError: one line naming the first bad or repeated label and where it came from.
    """
    labels = list(labels)
    seen: set[str] = set()
    for label in labels:
        why = label_problem(label)
        if why:
            raise UserError(f"{where}: invalid class label: {why}")
        if label in seen:
            raise UserError(f"{where}: class label {label!r} appears twice")
        seen.add(label)
    return labels
