"""Helpers shared by the export tests: a tiny real bundle (colour images, MobileNetV2 at
32 px, random init) that trains in seconds, and small file utilities."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tests.conftest import make_color_dataset


def make_tiny_bundle(root: Path) -> Path:
    """Train a tiny bundle under ``root`` (about 5-10 s) and return its path."""
    from edgeft.finetune import FinetuneOptions, finetune

    data = make_color_dataset(root / "colors", n_per_class=10, size=40)
    out = root / "bundle"
    finetune(
        FinetuneOptions(
            data=data,
            arch="mobilenet_v2",
            out=out,
            pretrained=False,
            size=(32, 32),
            epochs=1,
            freeze_epochs=0,
            quiet=True,
        )
    )
    return out


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / "bundle.json").read_text())


def partials(bundle: Path) -> list[Path]:
    """Temporary files an export left behind (there must be none)."""
    return [
        p
        for p in Path(bundle).rglob(".*")
        if p.is_file() and (".partial" in p.name or ".tmp" in p.name)
    ]
