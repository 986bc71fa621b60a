"""A private scratch folder inside the bundle for one export.

Every file an export creates (the artifact itself before it is committed, intermediate
ONNX files, the calibrator's inferred model) goes into a folder of its own,
``BUNDLE/.edgeft-export-<pid>-<random>/``, so two exports never share a temporary name.
It lives inside the bundle so that committing is a rename on one file system. The folder
is removed when the export ends; one left by a killed export is removed by the next export
once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".edgeft-export-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(bundle_dir: Path) -> list[Path]:
    """Remove scratch folders of exports whose process is gone, and hidden temporaries
    (``.NAME.*.tmp``, ``.NAME.*.partial``) a killed write left; returns what was removed.
    Call it holding the bundle's lock."""
    removed = []
    for p in bundle_dir.glob(".*"):
        if p.is_dir() and p.name.startswith(PREFIX):
            pid = p.name[len(PREFIX) :].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        elif p.is_file() and p.name.endswith((".partial", ".tmp")):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def workdir(bundle_dir: Path) -> Iterator[Path]:
    """A private scratch folder in ``bundle_dir`` for the duration of the block."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=bundle_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
