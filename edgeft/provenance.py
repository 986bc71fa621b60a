"""Versions, git commit and time stamped into every bundle and artifact record."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import edgeft

PACKAGES = (
    "torch",
    "torchvision",
    "fastai",
    "timm",
    "numpy",
    "pillow",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
)


def package_version(name: str) -> str | None:
    """Installed distribution version, or ``None``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    """The commit of the edgeft checkout, when it runs from one."""
    root = Path(edgeft.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(packages=PACKAGES) -> dict:
    """Versions of edgeft, Python and the packages that shape a model's numbers."""
    return {
        "edgeft": edgeft.__version__,
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: v for p in packages if (v := package_version(p))},
        "created": now_iso(),
    }
