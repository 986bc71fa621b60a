"""``edgeft export --trt``: a bundle's TensorRT engine, built on the machine that will run it.

Which path builds it (``--trt-mode auto``):

* TensorRT 8.5-10.x (JetPack 5, 6.x): builder precision flags on the FP32 ONNX --
  ``BuilderFlag.FP16``, or ``INT8`` with an entropy calibrator fed by the bundle's
  calibration images through its own preprocessing, and a calibration cache keyed to
  model + preprocessing + images + TensorRT version (``calibration/trt-*.cache``).
* TensorRT 11 and TensorRT-RTX (only ``tensorrt_rtx`` installed): the strongly typed path,
  from an ONNX that carries its precision: FP16 casts (``model-fp16.onnx``) or a Q/DQ file
  with symmetric signed INT8 (``model-int8-trt.onnx``, calibrated on the same images as
  ``onnx-int8``, which uses uint8 activations for ONNX Runtime's CPU kernels instead).
  The record says which path and which library built the engine.

Parity is the pipeline's (:mod:`exporters.validate`): where the engine can run here (a GPU
and the same TensorRT) it is measured itself; otherwise the ONNX it was built from is the
proxy (FP16 weights, or the Q/DQ scales TensorRT will use), and the record says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgeft.atomic import sha256_file
from edgeft.console import console
from edgeft.errors import UserError
from edgeft.parity import fold_input
from edgeft.platform.tensorrt import load_trt
from exporters.int8 import quantize_qdq
from exporters.onnx_fp16 import to_fp16
from exporters.request import BuildRequest, BuildResult
from exporters.tensorrt_build import build_engine
from exporters.tensorrt_calib import calibration_cache_key

TRT_MODES = ("auto", "flags", "typed")
SOURCE_FILES = {"fp16": "model-fp16.onnx", "int8": "model-int8-trt.onnx"}


@dataclass
class Options:
    """What the TensorRT exporter takes from ``edgeft export``'s options."""

    precision: str = "fp16"
    trt_mode: str = "auto"
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    calib_method: str = "percentile"
    max_accuracy_drop: float = 1.0
    max_float_layers: int | None = None
    opset: int = 17


def preflight(options: Options) -> None:
    """TensorRT must import here, and the mode and batch profile must make sense."""
    _, info = load_trt()
    resolve_mode(info, options.precision, options.trt_mode)
    batch_profile(options)


def resolve_mode(info, precision: str, requested: str = "auto") -> str:
    """The :data:`exporters.tensorrt_build.MODES` entry for ``precision`` on ``info``'s TensorRT.

    Raises:
        UserError: ``--trt-mode flags`` on a TensorRT without builder precision flags.
    """
    typed_only = info.flavour == "tensorrt_rtx" or info.major >= 11
    if requested not in TRT_MODES:
        raise UserError(f"--trt-mode must be one of {', '.join(TRT_MODES)}, not {requested!r}")
    if requested == "typed" or (requested == "auto" and typed_only):
        return "strongly-typed"
    if typed_only:
        raise UserError(
            f"{info.label} has no builder precision flags (removed in TensorRT 11; "
            "TensorRT-RTX never had them): use --trt-mode typed or auto"
        )
    return f"{precision}-flags"


def batch_profile(opts) -> tuple[int, int, int]:
    """min/opt/max batch: 1/1/8 by default, 1/1/1 on a DLA (which takes no dynamic shapes)."""
    default = (1, 1, 1) if opts.dla_core is not None else (1, 1, 8)
    lo = opts.min_batch or default[0]
    opt = opts.opt_batch or max(lo, default[1])
    hi = opts.max_batch or max(opt, default[2])
    if not 1 <= lo <= opt <= hi:
        raise UserError(
            f"--min-batch/--opt-batch/--max-batch must satisfy 1 <= min <= opt <= max; got {lo}/{opt}/{hi}"
        )
    return lo, opt, hi


def _calib_batches(x, size: int = 8):
    for i in range(0, len(x) - len(x) % size or len(x), size):
        yield x[i : i + size]


def _typed_source(req: BuildRequest, precision: str) -> tuple[Path, dict, dict | None]:
    """The FP16-cast or Q/DQ ONNX the strongly typed path builds from, in the workdir."""

    src = req.workdir / SOURCE_FILES[precision]
    int8_info = None
    if precision == "fp16":
        to_fp16(req.source, src)
    else:
        int8_info = quantize_qdq(req, "tensorrt", src)
    kind = (
        "fp16 onnx (casts)" if precision == "fp16" else "int8 Q/DQ onnx (symmetric, no bias Q/DQ)"
    )
    return src, {"path": SOURCE_FILES[precision], "kind": kind}, int8_info


def _flags_calibration(req: BuildRequest, info) -> dict:
    cal = req.calibration()
    key = calibration_cache_key(
        req.source_sha256, req.pp.to_dict(), info.version, cal.fingerprint()
    )
    x = fold_input(cal.x, req.pp) if req.normalize_in_graph else cal.x
    cache = req.cache / f"trt-{key}.cache" if req.cache is not None else None
    return {"calib_batches": _calib_batches(x), "calib_key": key, "calib_cache": cache}


def build(req: BuildRequest) -> BuildResult:
    """Leaf exporter of ``trt-fp16`` / ``trt-int8`` (see the module docstring)."""
    o = req.options
    trt, info = load_trt()
    mode = resolve_mode(info, o.precision, o.trt_mode)
    lo, opt, hi = batch_profile(o)
    build_from, source, int8_info, calib, side = req.source, {"path": req.source.name}, None, {}, {}
    if mode == "strongly-typed":
        build_from, source, int8_info = _typed_source(req, o.precision)
        side = {SOURCE_FILES[o.precision]: build_from}
    elif o.precision == "int8":
        calib = _flags_calibration(req, info)
    t0 = time.perf_counter()
    record = build_engine(
        build_from,
        req.out,
        mode=mode,
        min_batch=lo,
        opt_batch=opt,
        max_batch=hi,
        workspace_mib=o.workspace,
        timing_cache=o.timing_cache,
        dla_core=o.dla_core,
        trt=trt,
        **calib,
    )
    console().print(
        f"building the TensorRT engine ({info.label}, {mode}): {time.perf_counter() - t0:.1f} s"
    )
    record["engine"]["path"] = req.fmt.file
    record["onnx"]["path"] = source["path"]
    if int8_info:
        record["int8"] = {"fallback": int8_info["fallback"]}
        record["calibration"] = int8_info["calibration"]
        record["float_nodes"] = int8_info["float_nodes"]
    notes = []
    if info.flavour == "tensorrt_rtx":
        notes.append(
            f"{req.fmt.name} was built with {info.label} (strongly typed path): an RTX engine, "
            "not one for a Jetson's TensorRT"
        )
    how = "Q/DQ simulated in float" if o.precision == "int8" else "FP16 weights, float compute"
    built_from = {**source, "sha256": sha256_file(build_from)}
    return BuildResult(
        build=record,
        source={"built_from": built_from},
        target={"device": record["device"], "tensorrt": record["tensorrt"]},
        tools={info.flavour: info.version},
        side_files=side,
        proxy=build_from if mode == "strongly-typed" else None,
        proxy_optimize=o.precision != "int8",
        proxy_scope=f"the {o.precision} ONNX the engine was built from ({how})",
        notes=notes,
    )
