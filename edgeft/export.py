"""``edgeft export``: add ONNX, ONNX Runtime INT8 and TensorRT artifacts to a bundle, each
checked against the PyTorch model on the bundle's real validation images.

Each artifact is recorded in ``bundle.json`` (see ``edgeft/bundle.py``) with its path,
sha256, size, precision, build options, tool versions, target and the parity figures
measured right after the export.

Atomic: every file is written under a hidden temporary name in the bundle folder, checked,
and only then renamed into place, right before ``bundle.json`` is replaced (itself through
a temporary file); Ctrl-C is held back during those few renames. An interrupted or failed
export leaves the previous files and manifest as they were.

An artifact that fails its parity check is not kept: it is deleted and not recorded, so a
device can never pick up a model known to disagree with the trained one. The command exits
with code 3 and prints the figures; ``--no-check`` skips the check (the record then says
the artifact was not checked).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.atomic import sha256_file
from edgeft.bundle import Bundle
from edgeft.console import console
from edgeft.errors import ParityError, UserError
from edgeft.export_context import FILES, ExportContext
from edgeft.export_record import summary_table

CALIB_METHODS = ("minmax", "entropy", "percentile")


@dataclass
class ExportOptions:
    """What ``edgeft export`` makes (see ``edgeft export --help`` for each option)."""

    bundle: Path
    onnx: bool = False
    int8: bool = False
    trt: bool = False
    fp16: bool = False
    opset: int = 17
    fold_normalize: bool = False
    softmax: bool = False
    calib_data: Path | None = None
    calib_count: int = 200
    calib_method: str = "percentile"
    max_accuracy_drop: float = 1.0
    max_float_layers: int | None = None
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    trt_mode: str = "auto"
    check: bool = True
    data: Path | None = None
    force: bool = False
    threads: int | None = None
    quiet: bool = False

    @property
    def fp32_name(self) -> str:
        return "onnx-folded" if self.fold_normalize else "onnx"

    def targets(self) -> list[str]:
        """Artifacts asked for, in build order (the FP32 ONNX first when asked)."""
        out = []
        if self.onnx or not (self.int8 or self.trt):
            out.append(self.fp32_name)
        if self.int8 and not self.trt:
            out.append("onnx-int8")
        if self.trt:
            if self.fp16 or not self.int8:
                out.append("trt-fp16")
            if self.int8:
                out.append("trt-int8")
        return out

    def validate(self) -> None:
        """Check option combinations before any work.

        Raises:
            UserError: an impossible combination or value.
        """
        if self.fp16 and not self.trt:
            raise UserError(
                "--fp16 is a TensorRT precision: add --trt (ONNX Runtime on CPU runs FP32 or --int8)"
            )
        for flag, value in (
            ("--dla-core", self.dla_core),
            ("--workspace", self.workspace),
            ("--timing-cache", self.timing_cache),
        ):
            if value is not None and not self.trt:
                raise UserError(f"{flag} applies to TensorRT engines: add --trt")
        if self.calib_method not in CALIB_METHODS:
            raise UserError(
                f"--calib-method must be one of {', '.join(CALIB_METHODS)}, not {self.calib_method!r}"
            )
        if self.calib_count < 1:
            raise UserError(f"--calib-count must be at least 1, not {self.calib_count}")
        if self.max_accuracy_drop < 0:
            raise UserError(
                f"--max-accuracy-drop must be >= 0 points, not {self.max_accuracy_drop}"
            )
        if self.int8 and self.opset < 13:
            raise UserError(
                f"--int8 needs --opset 13 or newer (per-channel QuantizeLinear); got {self.opset}"
            )
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, not {self.threads}")


@dataclass
class ExportResult:
    """The records written, by artifact name, and notes for the user."""

    bundle: Path
    records: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _check_writable(bundle: Bundle, names: list[str]) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".edgeft-write-test-", dir=bundle.path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(
            f"cannot write to bundle {bundle.path}: {exc.strerror or exc}: make it writable "
            "or export a copy"
        ) from None
    for name in names:
        final = bundle.path / FILES[name]
        if final.exists() and not final.is_file():
            raise UserError(f"cannot write {final}: it exists and is not a file; move it away")


def _existing_fp32(ctx: ExportContext, name: str) -> tuple[Path, str] | None:
    """The recorded FP32 ONNX to build from, when it is intact and fits the options."""
    rec = ctx.bundle.artifacts.get(name)
    if rec is None:
        return None
    path = ctx.bundle.path / rec["path"]
    if not path.is_file() or sha256_file(path) != rec.get("sha256"):
        ctx.notes.append(f"the recorded {name} file is missing or changed: exported again")
        return None
    if (rec.get("output") == "probs") != ctx.opts.softmax:
        want = "probs (--softmax)" if ctx.opts.softmax else "logits"
        raise UserError(
            f"the bundle's {name} artifact outputs {rec.get('output')}, this export wants {want}: "
            f"add --onnx --force to re-export it"
        )
    return path, rec["sha256"]


def export_bundle(opts: ExportOptions) -> ExportResult:
    """Export the artifacts ``opts`` asks for into its bundle (see the module docstring).

    Raises:
        UserError: bad options, bundle, data or environment (exit 2).
        ParityError: an artifact disagrees with the PyTorch model past its tolerance (exit 3).
    """
    from edgeft.console import quiet_if

    with quiet_if(opts.quiet):
        return _export(opts)


def _export(opts: ExportOptions) -> ExportResult:
    from edgeft import export_steps as steps

    opts.validate()
    bundle = Bundle.load(opts.bundle)
    targets = opts.targets()
    if not opts.force:
        for name in targets:
            rec = bundle.artifacts.get(name)
            if rec is not None and (bundle.path / rec["path"]).is_file():
                raise UserError(
                    f"bundle {bundle.path} already has a {name} artifact ({rec['path']}): "
                    "pass --force to replace it"
                )
    _check_writable(bundle, targets + [opts.fp32_name])
    trt = steps.load_tensorrt() if opts.trt else None  # exits 2 with what to install
    from exporters.onnx_export import check_opset

    check_opset(opts.opset)
    ctx = ExportContext(bundle, opts)
    result = ExportResult(bundle.path)
    try:
        fp32 = None if opts.fp32_name in targets else _existing_fp32(ctx, opts.fp32_name)
        if fp32 is None:
            rec = steps.fp32_onnx(ctx)
            _gate(ctx, opts.fp32_name, rec)
            ctx.commit({opts.fp32_name: rec})
            result.records[opts.fp32_name] = rec
            fp32 = (bundle.path / rec["path"], rec["sha256"])
        for name in targets:
            if name == opts.fp32_name:
                continue
            if name == "onnx-int8":
                rec = steps.onnx_int8(ctx, *fp32)
            else:
                rec = steps.trt_engine(ctx, trt, name.split("-")[1], *fp32)
            _gate(ctx, name, rec)
            ctx.commit({name: rec})
            result.records[name] = rec
    finally:
        ctx.discard()
    result.notes = ctx.notes
    if result.records:
        console().print(summary_table(result.records))
    for note in ctx.notes:
        console().print(f"note: {note}")
    return result


def _gate(ctx: ExportContext, name: str, rec: dict) -> None:
    """Raise :class:`ParityError` when ``rec``'s figures break its tolerance (the staged
    files are then discarded by the caller)."""
    parity = rec.get("parity") or {}
    if not ctx.opts.check or not parity.get("breaches"):
        return
    from edgeft.export_record import failure_message

    raise ParityError(failure_message(name, rec), parity)
