"""The bundle: the one artifact that flows from finetune through export, bench and runtime.

A bundle is a directory::

    bundle.json      manifest (typed and versioned: :mod:`edgeft.manifest`)
    weights.pt       plain state_dict of ``nn.Sequential(body, head)`` (edgeft.models)
    split.json       the train/valid images used (paths relative to the data root)
    reference.npz    the training-time (fastai) validation probabilities
    *.png            confusion matrix, training curves
    model.onnx ...   artifacts added by ``edgeft export`` (names: :mod:`edgeft.formats`)

A bundle is verified where it is used. :meth:`Bundle.load` validates the manifest;
:meth:`Bundle.artifact_path` and :meth:`Bundle.weights_file` check the file's sha256
against its record before anything reads it (``trust_modified`` runs a changed file
anyway, with a warning on stderr); runners check the model's input and output shapes
against the manifest with :meth:`Bundle.check_io`. Each problem is one line
(:class:`edgeft.errors.UserError`).

Writes are atomic and safe under concurrency: a new bundle is assembled in a hidden
sibling folder and renamed into place; artifact records are merged into ``bundle.json``
under an exclusive lock on the bundle folder (re-read, merge, atomic replace).

This module imports neither torch nor fastai (the runtime reads bundles too).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeft.atomic import replace_dir, sha256_file, write_json_atomic
from edgeft.errors import UserError
from edgeft.manifest import MANIFEST, ArtifactRecord, Manifest, parse_manifest
from edgeft.preprocess import Preprocessing


class ArtifactModified(UserError):
    """A bundle file whose sha256 differs from its record (edited or corrupted after export)."""


_sha_cache: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256: hash a file once
_warned: set[str] = set()


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, cached per file size and modification time."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(path)
    return _sha_cache[key]


def _read_manifest(path: Path) -> Manifest:
    mf = path / MANIFEST
    if not path.is_dir():
        raise UserError(
            f"bundle {path} does not exist: create one with `edgeft finetune --out {path}`"
        )
    if not mf.is_file():
        raise UserError(
            f"{path} is not a bundle (no {MANIFEST}): pass a folder written by `edgeft finetune`"
        )
    try:
        raw = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read {mf}: {exc}") from None
    return parse_manifest(raw, str(mf))


class Bundle:
    """A bundle on disk, with its validated manifest.

    Attributes:
        path: the bundle folder.
        manifest: the typed ``bundle.json`` (:class:`edgeft.manifest.Manifest`).
        trust_modified: run artifacts whose sha256 differs from their record (warned).
    """

    def __init__(self, path: Path, manifest: Manifest, trust_modified: bool = False):
        self.path = Path(path)
        self.manifest = manifest
        self.trust_modified = trust_modified

    @classmethod
    def load(cls, path: str | os.PathLike, trust_modified: bool = False) -> Bundle:
        """Open and validate a bundle folder.

        Raises:
            UserError: the folder or manifest is missing, unreadable or invalid (one line
                naming the field), or written by a newer edgeft.
        """
        path = Path(path).expanduser()
        return cls(path, _read_manifest(path), trust_modified)

    def reload(self) -> Bundle:
        """The bundle as it is on disk now (another process may have added artifacts)."""
        return Bundle(self.path, _read_manifest(self.path), self.trust_modified)

    # -- what the manifest says ------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    @property
    def arch(self) -> str:
        return self.manifest.model.arch

    @property
    def preprocessing(self) -> Preprocessing:
        return self.manifest.preprocessing

    @property
    def artifacts(self) -> dict[str, ArtifactRecord]:
        return dict(self.manifest.artifacts)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` the model takes."""
        i = self.manifest.input
        return (i.channels, i.height, i.width)

    def artifact(self, name: str) -> ArtifactRecord:
        """The record of artifact ``name`` (e.g. ``onnx``, ``onnx-int8``).

        Raises:
            UserError: the bundle has no such artifact.
        """
        rec = self.manifest.artifacts.get(name)
        if rec is None:
            have = ", ".join(self.manifest.artifacts) or "none"
            raise UserError(
                f"bundle {self.path} has no {name} artifact (has: {have}): run `edgeft export "
                f"{self.path}` with the matching option first"
            )
        return rec

    # -- verified files --------------------------------------------------------------
    def _verified(self, path: Path, expected: str | None, what: str, fix: str) -> Path:
        if not path.is_file():
            raise UserError(f"{what} {path} is missing: {fix}")
        if expected is None or file_sha256(path) == expected:
            return path
        message = (
            f"{what} {path} was modified after it was recorded (sha256 {file_sha256(path)[:12]}... "
            f"!= {expected[:12]}... in bundle.json)"
        )
        if not self.trust_modified:
            raise ArtifactModified(message + f": {fix}, or pass --trust-modified to run it anyway")
        if str(path) not in _warned:
            _warned.add(str(path))
            print(
                f"edgeft: warning: {message}; running it because of --trust-modified",
                file=sys.stderr,
            )
        return path

    def artifact_path(self, name: str) -> Path:
        """The file of artifact ``name``, after checking its sha256 against the record.

        Raises:
            UserError: no such artifact, its file is missing, or it was modified.
        """
        rec = self.artifact(name)
        fix = "re-run `edgeft export --force`"
        for extra, digest in rec.extra_files.items():
            self._verified(self.path / extra, digest, f"{name} artifact file", fix)
        return self._verified(self.path / rec.path, rec.sha256, f"{name} artifact", fix)

    def weights_file(self) -> Path:
        """``weights.pt``, after checking its sha256 against ``model.weights_sha256``."""
        m = self.manifest.model
        return self._verified(
            self.path / m.weights, m.weights_sha256, "bundle weights", "re-run `edgeft finetune`"
        )

    def check_io(self, what: str, input_shape, n_outputs: int | None) -> None:
        """Refuse a model whose input or output shape does not fit the manifest.

        Args:
            what: the model, for the message (``model.onnx``).
            input_shape: its input shape (``N, C, H, W``; symbolic dims may be str/None).
            n_outputs: its number of output classes (None when unknown).

        Raises:
            UserError: one line naming the mismatch.
        """
        want = self.input_shape
        dims = list(input_shape)[1:] if input_shape is not None else []
        known = len(dims) == 3 and all(isinstance(d, int) and d > 0 for d in dims)
        if known and tuple(dims) != want:
            raise UserError(
                f"{what} takes input {dims[0]}x{dims[1]}x{dims[2]} but the bundle preprocesses "
                f"to {want[0]}x{want[1]}x{want[2]}: the file does not belong to this bundle; "
                "re-export it"
            )
        n = len(self.manifest.labels)
        if isinstance(n_outputs, int) and n_outputs > 0 and n_outputs != n:
            raise UserError(
                f"{what} has {n_outputs} outputs but the bundle has {n} labels: every output "
                "must have a label; re-export the model or fix the bundle's labels"
            )

    # -- other files -----------------------------------------------------------------
    def read_json(self, name: str) -> dict:
        """A JSON file of the bundle (one line when it is missing or unreadable)."""
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {self.path / name}: {exc}") from None

    def split(self) -> dict:
        """The recorded train/valid split with absolute paths (``root`` joined)."""
        where = self.path / "split.json"
        rec = self.read_json("split.json")
        try:
            root = Path(rec["root"])
            split = {
                "root": str(root),
                "train": [(root / p, label) for p, label in rec["train"]],
                "valid": [(root / p, label) for p, label in rec["valid"]],
            }
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where} is damaged: re-run finetune") from None
        known = set(self.manifest.labels)
        for _, label in split["train"] + split["valid"]:
            if label not in known:  # a label here becomes a folder name in bench --remote
                raise UserError(
                    f"{where} lists label {str(label)[:60]!r}, which is not one of the bundle's "
                    "labels: the file was edited or belongs to another bundle; re-run finetune"
                )
        return split

    # -- writing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, what: str = "another edgeft process") -> Iterator[None]:
        """Hold an exclusive lock on the bundle folder (waiting, with a message, if taken).

        An advisory ``flock`` on the folder itself: nothing is written into the bundle for
        it, and the kernel drops it when the process dies. (The ``filelock`` package
        would leave a lock file next to the artifacts; POSIX flock is enough here.)
        """
        import fcntl

        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"edgeft: waiting for {what} on {self.path} to finish", file=sys.stderr)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def write_manifest(self) -> None:
        """Write ``self.manifest`` to ``bundle.json`` atomically (caller holds :meth:`lock`)."""
        write_json_atomic(self.path / MANIFEST, self.manifest.to_json_dict())

    def golden(self) -> tuple[list[tuple[Path, str]], Path] | None:
        """The golden images ``[(path, label)]`` and reference outputs file, each checked
        against its sha256; None when the bundle has none (exported by an older edgeft)."""
        spec = self.manifest.golden
        if spec is None:
            return None
        fix = "re-run `edgeft export` on the workstation"
        images = [
            (self._verified(self.path / g.file, g.sha256, "golden image", fix), g.label)
            for g in spec.images
        ]
        ref = self._verified(
            self.path / spec.reference, spec.reference_sha256, "golden reference", fix
        )
        return images, ref

    def record_golden(self, spec) -> None:
        """Record golden images (their files already in place; caller holds :meth:`lock`)."""
        self.manifest = _read_manifest(self.path)
        self.manifest.golden = spec
        self.write_manifest()

    def record_artifacts(self, records: dict[str, ArtifactRecord]) -> None:
        """Merge artifact records into ``bundle.json`` (caller holds :meth:`lock`): the
        manifest is re-read from disk first, so records another process added stay."""
        self.manifest = _read_manifest(self.path)
        self.manifest.artifacts.update(records)
        self.write_manifest()


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an existing ``--out`` unless ``force``; fail early on an unwritable parent."""
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out} already exists: choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --out")
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write to {parent}: choose another --out")


def write_bundle_dir(out: Path, fill: Callable[[Path], None], force: bool = False) -> Path:
    """Create bundle folder ``out`` atomically (see :func:`edgeft.atomic.replace_dir`):
    ``fill(tmp_dir)`` writes every file; if it raises, or the process is killed, no folder
    named ``out`` appears (and an old one, replaced with ``force``, stays as it was)."""
    check_out_dir(out, force)
    return replace_dir(out, fill)
