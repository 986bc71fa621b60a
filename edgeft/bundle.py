"""The bundle: the one artifact that flows from finetune through export, bench and runtime.

A bundle is a directory::

    bundle.json      manifest (schema-versioned): labels, arch, input, preprocessing,
                     model, training record, metrics, artifacts, provenance
    weights.pt       plain state_dict of ``nn.Sequential(body, head)`` (edgeft.model)
    split.json       the train/valid images used (paths relative to the data root)
    reference.npz    the training-time (fastai) validation probabilities
    *.png            confusion matrix, training curves
    model.onnx ...   artifacts added by ``edgeft export``

Never a pickled Learner: weights load with ``torch.load(weights_only=True)``. Writes are
atomic: a new bundle is assembled in a hidden sibling folder and renamed into place; a
manifest update goes to a temporary file first and replaces the old one.

This module imports neither torch nor fastai (the runtime reads bundles too).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgeft.errors import UserError
from edgeft.preprocess import Preprocessing

SCHEMA = "edgeft.bundle"
SCHEMA_VERSION = 1
MANIFEST = "bundle.json"


class Bundle:
    """A bundle on disk; ``manifest`` is the parsed ``bundle.json``."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    # -- reading ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        """Open a bundle directory.

        Raises:
            UserError: the folder or manifest is missing or unreadable, or written by a
                newer edgeft (schema version above :data:`SCHEMA_VERSION`).
        """
        path = Path(path).expanduser()
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
            manifest = json.loads(mf.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {mf}: {exc}") from None
        if manifest.get("schema") != SCHEMA:
            raise UserError(f"{mf} is not an edgeft bundle manifest")
        version = manifest.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise UserError(
                f"bundle {path} has schema version {version}, this edgeft reads up to {SCHEMA_VERSION}: "
                "upgrade edgeft (pip install -U edgeft)"
            )
        return cls(path, manifest)

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def arch(self) -> str:
        return self.manifest["model"]["arch"]

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.manifest["preprocessing"])

    @property
    def weights_path(self) -> Path:
        return self.path / self.manifest["model"]["weights"]

    @property
    def artifacts(self) -> dict[str, dict]:
        return dict(self.manifest.get("artifacts", {}))

    def artifact(self, name: str) -> dict:
        """The record of artifact ``name`` (e.g. ``onnx``, ``onnx-int8``).

        Raises:
            UserError: the bundle has no such artifact or its file is gone.
        """
        rec = self.artifacts.get(name)
        if rec is None:
            have = ", ".join(self.artifacts) or "none"
            raise UserError(
                f"bundle {self.path} has no {name} artifact (has: {have}): run `edgeft export {self.path}` "
                f"with the matching option first"
            )
        if not (self.path / rec["path"]).is_file():
            raise UserError(
                f"artifact file {self.path / rec['path']} is missing: re-run `edgeft export`"
            )
        return rec

    def read_json(self, name: str) -> dict:
        return json.loads((self.path / name).read_text())

    def split(self) -> dict:
        """The recorded train/valid split with absolute paths (``root`` joined)."""
        rec = self.read_json("split.json")
        root = Path(rec["root"])
        return {
            "root": str(root),
            "train": [(root / p, label) for p, label in rec["train"]],
            "valid": [(root / p, label) for p, label in rec["valid"]],
        }

    # -- writing ---------------------------------------------------------------------
    def save_manifest(self) -> None:
        """Write ``bundle.json`` atomically (temporary file, then replace)."""
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def add_artifact(self, name: str, record: dict) -> None:
        """Record an artifact (its file must already be in place) and save the manifest."""
        self.manifest.setdefault("artifacts", {})[name] = record
        self.save_manifest()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """Create bundle folder ``out`` atomically.

    ``fill(tmp_dir)`` writes every file into a hidden sibling folder; only when it returns
    is the folder renamed to ``out`` (replacing an old one with ``force``). If it raises,
    or the process is killed, no folder named ``out`` appears.
    """
    out = Path(out)
    check_out_dir(out, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        fill(tmp)
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
