"""``bundle.json`` as typed records: the schema, its version, and the migration hook.

Reading a manifest validates everything a deploy depends on and turns the first problem
into one line that names the field (:func:`parse_manifest`): a missing or mistyped field,
labels that are empty, repeated or not plain names, a label count different from the
model's class count, an input size different from the preprocessing's, an artifact path
that leaves the bundle folder, a sha256 that is not one. Unknown extra fields are kept
(a newer minor edgeft may add some), so a manifest survives a read-modify-write.

Schema versions: :data:`SCHEMA_VERSION` is what this edgeft writes. An older manifest is
upgraded in memory by the functions in :data:`MIGRATIONS` (version ``v`` -> ``v + 1``);
a newer one is refused with what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StrictInt,
    ValidationError,
    model_validator,
)

from edgeft.errors import UserError, validation_message
from edgeft.labels import check_labels
from edgeft.preprocess import Preprocessing

SCHEMA = "edgeft.bundle"
SCHEMA_VERSION = 1
MANIFEST = "bundle.json"

#: ``{v: upgrade}``: ``upgrade(raw_dict)`` returns the dict of version ``v + 1``.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _file_name(value: str) -> str:
    # An artifact or weights file lives in the bundle folder itself: no folders, no
    # escapes, nothing hidden (hidden names are edgeft's own temporaries).
    if not value or "/" in value or "\\" in value or value in (".", "..") or value[0] == ".":
        raise ValueError(f"must be a plain file name inside the bundle, not {value!r}")
    return value


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
Sha256 = Annotated[str, AfterValidator(_sha256)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class InputSpec(_Record):
    """The model input: ``(N, channels, height, width)`` float32."""

    channels: Literal[3] = 3
    height: PositiveInt
    width: PositiveInt
    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW"] = "NCHW"


class ModelSpec(_Record):
    """How to rebuild the PyTorch model (``edgeft.models``) and where its weights are."""

    arch: str
    head: str = "fastai"
    num_classes: PositiveInt
    weights: FileName = "weights.pt"
    weights_sha256: Sha256 | None = None
    groups: list[list[int]] = Field(default_factory=list)  # layer-group index ranges
    output: Literal["logits", "probs"] = "logits"


class ArtifactRecord(_Record):
    """One exported file: what it is, its sha256, how it was built, its measured parity."""

    path: FileName
    format: str
    precision: Literal["fp32", "fp16", "bf16", "int8"]
    sha256: Sha256
    normalize_in_graph: bool = False
    output: Literal["logits", "probs"] = "logits"
    size_bytes: int | None = None  # with its extra_files
    source: dict | None = None
    build: dict = Field(default_factory=dict)
    tools: dict = Field(default_factory=dict)
    target: dict = Field(default_factory=dict)
    parity: dict = Field(default_factory=dict)
    preprocessing: dict | None = None  # the artifact's own contract, when it differs
    created: str | None = None
    # Files the artifact needs besides ``path`` (an OpenVINO IR's weights), with their sha256.
    extra_files: dict[FileName, Sha256] = Field(default_factory=dict)


def _golden_file(value: str) -> str:
    folder, _, name = value.partition("/")
    if folder != GOLDEN_DIR or not name:
        raise ValueError(f"must be a file in {GOLDEN_DIR}/, not {value!r}")
    return f"{folder}/{_file_name(name)}"


GoldenFile = Annotated[str, AfterValidator(_golden_file)]
GOLDEN_DIR = "golden"


class GoldenImage(_Record):
    """One golden image: a validation image the FP32 model classifies confidently."""

    file: GoldenFile
    label: str
    sha256: Sha256


class GoldenSpec(_Record):
    """Golden images and the FP32 reference outputs on them (``edgeft export`` records them):
    a device reproduces these before it trusts a bundle (:meth:`Classifier.self_test`)."""

    images: list[GoldenImage]
    reference: GoldenFile = f"{GOLDEN_DIR}/reference.npz"
    reference_sha256: Sha256
    output: Literal["logits", "probs"] = "logits"


class Manifest(_Record):
    """The whole ``bundle.json``."""

    schema_: Literal["edgeft.bundle"] = Field(alias="schema")
    schema_version: StrictInt
    labels: list[str]
    num_classes: PositiveInt
    input: InputSpec
    preprocessing: Preprocessing
    model: ModelSpec
    training: dict = Field(default_factory=dict)
    metrics: dict = Field(default_factory=dict)
    artifacts: dict[str, ArtifactRecord] = Field(default_factory=dict)
    provenance: dict = Field(default_factory=dict)
    files: dict = Field(default_factory=dict)
    golden: GoldenSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        try:
            check_labels(self.labels, "labels")
        except UserError as exc:
            raise ValueError(str(exc)) from None
        n = len(self.labels)
        if n < 2:
            raise ValueError(f"a classifier needs at least 2 labels, the manifest has {n}")
        if self.num_classes != n or self.model.num_classes != n:
            raise ValueError(
                f"{n} labels but num_classes {self.num_classes} and model.num_classes "
                f"{self.model.num_classes}: they must all match the model's outputs"
            )
        if (self.input.height, self.input.width) != tuple(self.preprocessing.size):
            raise ValueError(
                f"input is {self.input.height}x{self.input.width} but preprocessing resizes to "
                f"{self.preprocessing.size[0]}x{self.preprocessing.size[1]}"
            )
        return self

    def to_json_dict(self) -> dict:
        """The manifest as written to ``bundle.json`` (field aliases, JSON types)."""
        return self.model_dump(mode="json", by_alias=True)


def migrate(raw: dict, where: str) -> dict:
    """Upgrade a raw manifest dict to :data:`SCHEMA_VERSION` (see :data:`MIGRATIONS`).

    Raises:
        UserError: not an edgeft manifest, a version that is not an integer, or newer
            than this edgeft reads.
    """
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise UserError(f'{where} is not an edgeft bundle manifest (no "schema": "{SCHEMA}")')
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(
            f"{where}: schema_version must be an integer, not {version!r}: the manifest was "
            "edited by hand or damaged; re-export or re-run finetune"
        )
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{where} has schema version {version}, newer than this edgeft reads "
            f"({SCHEMA_VERSION}): upgrade edgeft (pip install -U edgeft)"
        )
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise UserError(f"{where} has schema version {version}, which cannot be upgraded")
        raw = MIGRATIONS[version](dict(raw))
        version = raw["schema_version"] = version + 1
    return raw


def parse_manifest(raw: Any, where: str = MANIFEST) -> Manifest:
    """Validate a parsed ``bundle.json`` (after :func:`migrate`).

    Raises:
        UserError: one line naming the first invalid field.
    """
    raw = migrate(raw, where)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise UserError(validation_message(exc, where)) from None
