"""The three kinds of artifact ``edgeft export`` builds, each staged and checked; the caller
(:func:`edgeft.export.export_bundle`) gates on parity and commits."""

from __future__ import annotations

from pathlib import Path

from edgeft.export_record import artifact_record, parity_block, tools


def load_tensorrt():
    """``(module, TRTInfo)`` of the installed TensorRT (``tensorrt`` first, then TensorRT-RTX).

    Raises:
        UserError: neither imports; one line says what to install (exit 2).
    """
    from exporters.tensorrt_env import load_trt

    return load_trt()


def _out_kind(ctx) -> str:
    return "probs" if ctx.opts.softmax else "logits"


def fp32_onnx(ctx) -> dict:
    """Export the FP32 ONNX (``onnx`` or ``onnx-folded``) and measure it against PyTorch."""
    from edgeft.export_context import FILES
    from exporters.onnx_export import export_onnx

    opts = ctx.opts
    name = opts.fp32_name
    staged = ctx.stage(FILES[name])
    model_rec = ctx.bundle.manifest.get("model", {})
    with ctx.step(f"exporting {name} (opset {opts.opset})"):
        build = export_onnx(
            ctx.torch_model(),
            ctx.pp,
            ctx.labels,
            staged,
            opset=opts.opset,
            fold_normalize=opts.fold_normalize,
            softmax=opts.softmax,
            metadata={
                "edgeft.arch": ctx.bundle.arch,
                "edgeft.weights_sha256": model_rec.get("weights_sha256", ""),
            },
        )
    figures = None
    if opts.check:
        figures = ctx.figures(ctx.run_onnx(staged, opts.fold_normalize), _out_kind(ctx))
    target = {
        "runtime": "any ONNX runtime (checked with onnxruntime, CPUExecutionProvider)",
        "input": "RGB 0..1 (mean/std in the graph)"
        if opts.fold_normalize
        else "RGB normalised with mean/std",
    }
    return artifact_record(
        ctx,
        staged,
        fmt="onnx",
        precision="fp32",
        normalize_in_graph=opts.fold_normalize,
        output=_out_kind(ctx),
        build=build,
        target=target,
        parity=parity_block(ctx, figures, "fp32", "onnxruntime CPU vs PyTorch FP32"),
        source={
            "weights": model_rec.get("weights", "weights.pt"),
            "sha256": model_rec.get("weights_sha256"),
        },
    )


def onnx_int8(ctx, fp32_path: Path, fp32_sha: str) -> dict:
    """Quantize for ONNX Runtime's CPU kernels, with the sensitive-layer fallback."""
    from edgeft.export_context import FILES
    from exporters.int8_build import build_int8
    from exporters.ort_int8 import cpu_int8_info, ort_graph_summary

    opts = ctx.opts
    staged = ctx.stage(FILES["onnx-int8"])
    info = build_int8(
        ctx, fp32_path, fp32_sha, staged, "ort-cpu", opts.fold_normalize, _out_kind(ctx)
    )
    graph = ort_graph_summary(staged)
    if info["float_nodes"]:
        ctx.notes.append(
            f"onnx-int8 keeps {len(info['float_nodes'])} layer(s) in float: {', '.join(info['float_nodes'])}"
        )
    build = {
        **info["recipe"],
        "calibration": info["calibration"],
        "float_nodes": info["float_nodes"],
        "int8": {"fallback": info["fallback"]},
        "max_accuracy_drop_pp": opts.max_accuracy_drop,
        "opset": opts.opset,
    }
    target = {
        "runtime": "onnxruntime",
        "provider": "CPUExecutionProvider",
        "exported_on": cpu_int8_info(),
        "optimized_graph": graph,
    }
    scope = "onnxruntime CPU (graph optimisations on) vs PyTorch FP32"
    return artifact_record(
        ctx,
        staged,
        fmt="onnx",
        precision="int8",
        normalize_in_graph=opts.fold_normalize,
        output=_out_kind(ctx),
        build=build,
        target=target,
        parity=parity_block(ctx, info["figures"], "int8", scope),
        source={"artifact": opts.fp32_name, "path": ctx.rel(fp32_path), "sha256": fp32_sha},
    )


def trt_engine(ctx, trt, precision: str, fp32_path: Path, fp32_sha: str) -> dict:
    """Build ``trt-fp16`` / ``trt-int8`` on this machine (see :mod:`exporters.tensorrt`)."""
    from edgeft.export_context import FILES
    from exporters.tensorrt import build_trt

    module, info = trt
    opts = ctx.opts
    staged = ctx.stage(FILES[f"trt-{precision}"])
    res = build_trt(
        ctx,
        module,
        info,
        precision,
        fp32_path,
        fp32_sha,
        opts.fold_normalize,
        _out_kind(ctx),
        staged,
    )
    build = dict(res["build"])  # keeps "tensorrt" and "device": check_engine_compatible reads them
    device = build["device"]
    if res["int8"]:
        build["int8"] = {"fallback": res["int8"]["fallback"]}
        build["calibration"] = res["int8"]["calibration"]
        build["float_nodes"] = res["int8"]["float_nodes"]
    if info.flavour == "tensorrt_rtx":
        ctx.notes.append(
            f"trt-{precision} was built with {info.label} (strongly typed path): an RTX engine, "
            "not one for a Jetson's TensorRT"
        )
    return artifact_record(
        ctx,
        staged,
        fmt="tensorrt-plan",
        precision=precision,
        normalize_in_graph=opts.fold_normalize,
        output=_out_kind(ctx),
        build=build,
        target={"device": device, "tensorrt": build["tensorrt"]},
        parity=parity_block(ctx, res["figures"], precision, res["parity_scope"]),
        source={"artifact": opts.fp32_name, "sha256": fp32_sha, "built_from": res["source"]},
        tool_versions=tools(info.flavour.replace("_", "-")) | {info.flavour: info.version},
    )
