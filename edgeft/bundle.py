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
from collections.abc import Callable
from pathlib import Path

from edgeft.atomic import replace_dir, write_json_atomic
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


def onnx_metadata_preprocessing(metadata: dict | None) -> dict | None:
    """The ``edgeft.preprocessing`` contract from ONNX ``metadata_props`` (JSON text) if any."""
    value = (metadata or {}).get("edgeft.preprocessing")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def artifact_preprocessing(
    bundle: Bundle, record: dict | None, metadata: dict | None = None
) -> tuple[Preprocessing, str, list[str]]:
    """The preprocessing a device applies for an artifact: the contract the artifact itself
    carries (its record's ``preprocessing``, else the ``edgeft.preprocessing`` entry of the
    ONNX file's metadata, see :meth:`edgeft.runners.base.Runner.metadata`), else the
    bundle's. Bench and the runtime both use this, so a wrong record shows up in bench as
    the accuracy drop a device would see.

    Returns:
        ``(pp, source, differs)``: the contract with mean/std normalisation applied
        (folded graphs get it undone by :func:`edgeft.parity.run_batches`, and the runtime
        skips it for them), where it came from (``"artifact record"``, ``"ONNX metadata"``
        or ``"bundle"``), and the fields in which it differs from the bundle's.
    """
    base = bundle.preprocessing
    own, source = (record or {}).get("preprocessing"), "artifact record"
    if not isinstance(own, dict):
        own, source = onnx_metadata_preprocessing(metadata), "ONNX metadata"
    if not isinstance(own, dict):
        return base, "bundle", []
    own = {k: v for k, v in own.items() if k != "normalize_in_graph"}  # the record says that
    merged = Preprocessing.from_dict({**base.to_dict(), **own})
    differs = [
        k
        for k in ("size", "mean", "std", "resize", "interpolation", "channel_order", "value_range")
        if getattr(merged, k) != getattr(base, k)
    ]
    return merged, source, differs
