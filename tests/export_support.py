"""Helpers shared by the export tests: a tiny real bundle (colour images, MobileNetV2 at
32 px, random init) that trains in seconds, and small file utilities."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.conftest import copy_bundle, tiny_bundle  # noqa: F401  (copy_bundle re-exported)


def make_tiny_bundle(root: Path) -> Path:
    """Train a tiny bundle under ``root`` (about 5-10 s) and return its path."""
    return tiny_bundle(root)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / "bundle.json").read_text())


def partials(bundle: Path) -> list[Path]:
    """Temporary files and scratch folders an export left behind (there must be none)."""
    return [
        p
        for p in Path(bundle).rglob(".*")
        if (p.is_file() and (".partial" in p.name or ".tmp" in p.name))
        or (p.is_dir() and p.name.startswith(".edgeft-export-"))
    ]
