"""Validation, once per artifact: run the built file on the validation images and compare
it with the FP32 reference (optimum's ``validate_model_outputs`` step)."""

from __future__ import annotations

import numpy as np

from edgeft import formats
from edgeft.errors import UserError
from edgeft.parity import breaches, run_batches, tolerance_for
from exporters.request import Judgement


def tolerance(precision: str, opts):
    """The parity tolerance: edgeft.parity's defaults; INT8's accuracy drop from
    ``--max-accuracy-drop``."""
    if precision == "int8":
        return tolerance_for("int8", {"max_accuracy_drop": opts.max_accuracy_drop})
    return tolerance_for(precision)


def run_onnx(
    path_or_model, x: np.ndarray, threads: int | None, optimize: bool = True
) -> np.ndarray:
    """Outputs of an ONNX file or in-memory model over ``x`` with ONNX Runtime on the CPU.
    ``optimize=False`` runs the graph as written (Q/DQ simulated in float: the arithmetic
    TensorRT's explicit quantization reproduces)."""
    from exporters.int8_fallback import run_model

    if not hasattr(path_or_model, "graph"):
        import onnx

        path_or_model = onnx.load(str(path_or_model))
    return run_model(path_or_model, x, threads=threads, optimize=optimize)


def judge_factory(evidence, precision: str, out_kind: str, normalize_in_graph: bool, opts):
    """The ``judge`` a searching exporter scores candidate models with."""
    tol = tolerance(precision, opts)

    def judge(model, optimize: bool = True) -> Judgement:
        x = evidence.inputs(evidence.valid().x, normalize_in_graph)
        figures = evidence.figures(run_onnx(model, x, opts.threads, optimize), out_kind)
        return Judgement(
            not breaches(figures, tol), figures["accuracy_drop_pp"], figures["agreement"], figures
        )

    return judge


def _run_here(fmt, bundle, staged, stub, evidence, threads):
    """Run the staged file through its own runner on a device of this machine, or explain
    why it cannot run here."""
    devices = [d for d in ("cpu", "cuda") if d in fmt.devices]
    why = formats.missing_needs(fmt)
    if why:
        return None, why
    cls = formats.load_object(fmt.runner)
    reasons = []
    for device in devices:
        if device == "cuda":
            from edgeft.platform.gpu import probe_gpu

            gpu, reason = probe_gpu()
            if gpu is None:
                reasons.append(reason or "no GPU")
                continue
        try:
            runner = cls(bundle, fmt, device=device, threads=threads, path=staged, record=stub)
            with runner:
                return run_batches(
                    runner, evidence.valid().x, pp=evidence.pp
                ), f"{fmt.name} on {device}"
        except UserError as exc:
            reasons.append(f"the {fmt.name} file could not run here: {exc}")
    return None, "; ".join(reasons) or f"{fmt.name} runs on {', '.join(fmt.devices)} only"


def measure(fmt, bundle, staged, stub: dict, result, evidence, threads) -> tuple[dict | None, str]:
    """Figures of a built artifact against the reference, and what was measured.

    The artifact runs through its own runner where this machine can run it; otherwise
    the exporter's ``proxy`` file (the ONNX a TensorRT engine was built from) is measured
    with ONNX Runtime on the CPU, and the scope says so.
    """
    out, scope = _run_here(fmt, bundle, staged, stub, evidence, threads)
    if out is not None:
        return evidence.figures(out, stub["output"]), scope + " vs PyTorch FP32"
    if result.proxy is not None:
        x = evidence.inputs(evidence.valid().x, stub["normalize_in_graph"])
        proxy_out = run_onnx(result.proxy, x, threads, result.proxy_optimize)
        return (
            evidence.figures(proxy_out, stub["output"]),
            f"{result.proxy_scope}, run with ONNX Runtime on the CPU; {fmt.name} itself not run ({scope})",
        )
    return None, f"not measured: {fmt.name} not run ({scope}) and there is no proxy file"
