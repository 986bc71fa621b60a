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

Parity: where the engine can run here (a GPU and the same TensorRT), it is measured on the
validation images. Otherwise the ONNX the engine was built from is measured with ONNX
Runtime on the CPU (FP16 weights, or the Q/DQ scales TensorRT will use), and the record
says the engine itself was not run, and why.
"""

from __future__ import annotations

from edgeft.errors import UserError
from exporters.tensorrt_build import build_engine
from exporters.tensorrt_calib import calibration_cache_key
from exporters.tensorrt_device import probe_gpu

TRT_MODES = ("auto", "flags", "typed")
SOURCE_FILES = {"fp16": "model-fp16.onnx", "int8": "model-int8-trt.onnx"}


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


def build_trt(
    ctx,
    trt,
    info,
    precision: str,
    fp32_path,
    fp32_sha: str,
    normalize_in_graph: bool,
    out_kind: str,
    engine_path,
) -> dict:
    """Build the ``trt-<precision>`` engine into ``engine_path`` (a staged name).

    Returns:
        ``{"build": engine record, "source": {...}, "figures": ..., "parity_scope": str,
        "int8": int8 info or None}``.
    """
    from exporters.int8_build import build_int8
    from exporters.onnx_fp16 import to_fp16

    opts = ctx.opts
    mode = resolve_mode(info, precision, opts.trt_mode)
    lo, opt, hi = batch_profile(opts)
    source = {"path": ctx.rel(fp32_path), "sha256": fp32_sha, "kind": "fp32 onnx"}
    int8_info, source_figures = None, None
    calib = {}
    if mode == "strongly-typed":
        src = ctx.stage(SOURCE_FILES[precision])
        if precision == "fp16":
            with ctx.step("converting the ONNX to FP16"):
                to_fp16(fp32_path, src)
            if opts.check:
                source_figures = ctx.figures(ctx.run_onnx(src, normalize_in_graph), out_kind)
        else:
            int8_info = build_int8(
                ctx, fp32_path, fp32_sha, src, "tensorrt", normalize_in_graph, out_kind
            )
            source_figures = int8_info["figures"]
        source = {
            "path": SOURCE_FILES[precision],
            "sha256": ctx.sha256(src),
            "kind": "fp16 onnx (casts)"
            if precision == "fp16"
            else "int8 Q/DQ onnx (symmetric, no bias Q/DQ)",
        }
        build_from = src
    else:
        build_from = fp32_path
        if precision == "int8":
            cal = ctx.calibration()
            key = calibration_cache_key(fp32_sha, ctx.pp.to_dict(), info.version, cal.fingerprint())
            x = ctx.model_input(cal.x, normalize_in_graph)
            calib = {
                "calib_batches": _calib_batches(x),
                "calib_key": key,
                "calib_cache": ctx.bundle.path / "calibration" / f"trt-{key}.cache",
            }
    with ctx.step(f"building the TensorRT engine ({info.label}, {mode})"):
        record = build_engine(
            build_from,
            engine_path,
            mode=mode,
            min_batch=lo,
            opt_batch=opt,
            max_batch=hi,
            workspace_mib=opts.workspace,
            timing_cache=opts.timing_cache,
            dla_core=opts.dla_core,
            trt=trt,
            **calib,
        )
    record["engine"]["path"] = ctx.final_name(engine_path)
    record["onnx"]["path"] = source["path"]
    return {
        "build": record,
        "source": source,
        "int8": int8_info,
        **_engine_parity(
            ctx, record, engine_path, normalize_in_graph, out_kind, precision, source_figures, mode
        ),
    }


def _engine_parity(
    ctx, record, engine_path, normalize_in_graph, out_kind, precision, source_figures, mode
):
    if not ctx.opts.check:
        return {"figures": None, "parity_scope": "not checked (--no-check)"}
    gpu, reason = probe_gpu()
    if gpu is not None:
        from edgeft.runners.tensorrt import TrtRunner

        rec = {
            "build": record,
            "normalize_in_graph": normalize_in_graph,
            "output": out_kind,
            "precision": precision,
        }
        runner = TrtRunner(ctx.bundle, path=engine_path, record=rec)
        try:
            with runner:
                out = ctx.run_runner(runner)
            return {
                "figures": ctx.figures(out, out_kind),
                "parity_scope": f"engine on {gpu['name']}",
            }
        except UserError as exc:
            reason = f"the engine could not run here: {exc}"
    if source_figures is not None:
        how = "Q/DQ simulated in float" if precision == "int8" else "FP16 weights, float compute"
        scope = (
            f"the {precision} ONNX the engine was built from, run with ONNX Runtime on the CPU ({how}); "
            f"engine not run ({reason})"
        )
        return {"figures": source_figures, "parity_scope": scope}
    return {
        "figures": None,
        "parity_scope": f"not measured: engine not run ({reason}); {mode} builds "
        "from the FP32 ONNX, so there is no reduced-precision file to measure instead",
    }
