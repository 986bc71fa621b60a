"""``edgeft export`` options (declared once; the CLI is derived from these fields) and the
forms they ask for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeft import formats
from edgeft.errors import UserError
from edgeft.options import opt, parse_name_list

CALIB_METHODS = ("minmax", "entropy", "percentile")


@dataclass
class ExportOptions:
    """What ``edgeft export`` makes, and how."""

    bundle: Path = opt(help="Bundle folder (from edgeft finetune).", argument=True)
    onnx: bool = opt(False, "FP32 ONNX (the default when nothing else is asked).")
    int8: bool = opt(
        False,
        "INT8: ONNX Runtime static quantization for CPUs; with --trt, a TensorRT INT8 engine.",
    )
    trt: bool = opt(
        False, "TensorRT engine, built here for this GPU (--fp16 by default, and/or --int8)."
    )
    fp16: bool = opt(False, "With --trt: an FP16 engine.")
    format: list[str] | None = opt(
        None,
        "Forms to make by name (comma-separated or repeated), as `edgeft bench --backends` "
        "names them: " + ", ".join(formats.names(exportable=True)) + ".",
        parse=parse_name_list,
        repeat=True,
    )
    opset: int = opt(17, "ONNX opset.")
    fold_normalize: bool = opt(
        False, "Put mean/std into the graph: the device only resizes and scales to 0..1."
    )
    softmax: bool = opt(False, "Append a softmax: output 'probs' instead of 'logits'.")
    calib_data: Path | None = opt(
        None,
        "Calibration images (folder, or class folders); default: the bundle's training images.",
    )
    calib_count: int = opt(200, "Calibration images, sampled across classes (all if fewer).")
    calib_method: str = opt("percentile", "minmax | entropy | percentile (99.999th).")
    max_accuracy_drop: float = opt(
        1.0, "INT8: largest accuracy drop in points; sensitive layers stay float until it fits."
    )
    max_float_layers: int | None = opt(None, "INT8: most layers kept in float (default a fifth).")
    min_batch: int | None = opt(None, "TensorRT profile: smallest batch (1).")
    opt_batch: int | None = opt(None, "TensorRT profile: batch to optimise for (1).")
    max_batch: int | None = opt(None, "TensorRT profile: largest batch (8; 1 on a DLA).")
    workspace: int | None = opt(None, "TensorRT builder workspace in MiB.")
    timing_cache: Path | None = opt(None, "TensorRT timing cache file (read and updated).")
    dla_core: int | None = opt(None, "Build for this DLA core (Jetson), GPU fallback on.")
    trt_mode: str = opt(
        "auto",
        "auto | flags (TensorRT 8.5-10 builder flags + calibrator) | typed (strongly typed "
        "from FP16/Q-DQ ONNX).",
    )
    check: bool = opt(True, "Check each artifact against PyTorch (--no-check skips it).")
    data: Path | None = opt(
        None, "Labelled validation folder, if the bundle's recorded images moved."
    )
    force: bool = opt(False, "Replace existing artifacts.")
    threads: int | None = opt(None, "CPU threads for the checks (default: all).")
    trust_modified: bool = opt(
        False, "Build from a source artifact whose sha256 differs from its record (warned)."
    )
    quiet: bool = opt(False, "No progress or tables.")

    @property
    def fp32_name(self) -> str:
        """The FP32 ONNX this export builds from: ``onnx``, or ``onnx-folded``."""
        return "onnx-folded" if self.fold_normalize else "onnx"

    def targets(self) -> list[str]:
        """Forms asked for, in table order; the FP32 ONNX they are built from comes first
        where asked. ``--format`` names any exportable form; the flags are shorthands."""
        out = []
        if self.onnx or not (self.int8 or self.trt or self.format):
            out.append(self.fp32_name)
        if self.int8 and not self.trt:
            out.append("onnx-int8")
        if self.trt:
            if self.fp16 or not self.int8:
                out.append("trt-fp16")
            if self.int8:
                out.append("trt-int8")
        for name in self.format or []:
            fmt = formats.get(name)
            if fmt.exporter is None:
                raise UserError(
                    f"{name} runs the bundle's own weights; there is nothing to export for it"
                )
            out.append(
                self.fp32_name if name in ("onnx", "onnx-folded") and self.fold_normalize else name
            )
        order = list(formats.FORMATS)
        return sorted(dict.fromkeys(out), key=order.index)

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
        if not self.max_accuracy_drop >= 0 or self.max_accuracy_drop == float("inf"):
            raise UserError(
                f"--max-accuracy-drop must be >= 0 points and finite, not {self.max_accuracy_drop}"
            )
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, not {self.threads}")
        self.targets()  # unknown --format names fail here
