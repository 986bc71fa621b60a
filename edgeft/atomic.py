"""Writing files so that nothing half-written is ever left under the final name.

Every writer here assembles its output under a hidden temporary name in the destination
folder and renames it into place (``os.replace``/``os.rename`` are atomic on one file
system). A crash or kill leaves the old file or folder untouched and, at worst, a hidden
temporary next to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgeft.interrupts import sigint_held


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(is_dir: bool = False) -> int:
    """The mode a plain ``open``/``mkdir`` would give a new file or folder (umask applied):
    ``mkstemp``/``mkdtemp`` use 0600/0700, which a service user (``User=edgeft`` in
    ``deploy/``) could not read after an atomic replace."""
    return (0o777 if is_dir else 0o666) & ~_umask()


def write_bytes_atomic(path: str | os.PathLike, data, fsync: bool = False) -> Path:
    """Write ``data`` (bytes-like) to ``path`` via a temporary file and ``os.replace``.

    The file keeps the mode of the file it replaces (or gets the umask's default).

    Args:
        fsync: flush the data to disk before the rename (for large artifacts that must
            survive a power cut, e.g. TensorRT plans).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mode = path.stat().st_mode & 0o7777 if path.is_file() else default_mode()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def replace_dir(out: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Create or replace folder ``out`` atomically.

    ``fill(tmp)`` writes every file into a hidden sibling folder; only when it returns is
    that folder renamed to ``out`` (an existing ``out`` is moved aside first and deleted
    after). If ``fill`` raises, or the process is killed, ``out`` is as it was.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        os.chmod(tmp, out.stat().st_mode & 0o7777 if out.is_dir() else default_mode(True))
        fill(tmp)
        # Ctrl-C between the two renames would leave neither folder at ``out``: held until
        # both are done (and refused before them after one a finalizer swallowed)
        with sigint_held():
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
                os.rename(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
