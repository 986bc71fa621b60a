"""Validation, once per artifact: run the built file on the validation images and compare
it with the FP32 reference (optimum's ``validate_model_outputs`` step)."""

from __future__ import annotations

from edgeft import formats
from edgeft.errors import UserError
from edgeft.parity import breaches, run_batches, tolerance_for
from edgeft.platform.gpu import probe_gpu
from exporters.int8_fallback import run_model
from exporters.request import Judgement


def tolerance(precision: str, opts):
    """The parity tolerance: edgeft.parity's defaults; INT8's accuracy drop from
    ``--max-accuracy-drop``."""
    if precision == "int8":
        return tolerance_for("int8", {"max_accuracy_drop": opts.max_accuracy_drop})
    return tolerance_for(precision)


def run_onnx(path_or_model, images, threads: int | None, optimize: bool = True, fold_pp=None):
    """Outputs of an ONNX file or in-memory model over ``images`` with ONNX Runtime on the
    CPU (see :func:`exporters.int8_fallback.run_model`)."""
    if not hasattr(path_or_model, "graph"):
        import onnx

        path_or_model = onnx.load(str(path_or_model))
    return run_model(path_or_model, images, threads=threads, optimize=optimize, fold_pp=fold_pp)


def score_factory(evidence, precision: str, out_kind: str, opts):
    """``score(outputs) -> Judgement``: a candidate's outputs on the validation images
    (``evidence.valid()``, in order) against the reference, with the form's tolerance."""
    tol = tolerance(precision, opts)

    def score(out) -> Judgement:
        figures = evidence.figures(out, out_kind)
        passed = not breaches(figures, tol)
        return Judgement(passed, figures["accuracy_drop_pp"], figures["agreement"], figures)

    return score


def judge_factory(evidence, precision: str, out_kind: str, normalize_in_graph: bool, opts):
    """``judge(onnx_model, optimize) -> Judgement``: a candidate ONNX model run with ONNX
    Runtime on the validation images and scored (the INT8 search's question)."""
    score = score_factory(evidence, precision, out_kind, opts)

    def judge(model, optimize: bool = True) -> Judgement:
        fold = evidence.pp if normalize_in_graph else None
        return score(run_onnx(model, evidence.valid(), opts.threads, optimize, fold))

    return judge


def _run_here(fmt, bundle, staged, stub, evidence, threads):
    """Run the staged file through its own runner on a device of this machine, or explain
    why it cannot run here. A form that runs on the CPU must run: its failure is the
    export's failure. Only a GPU form on a machine without a usable GPU falls back (to the
    exporter's proxy file, in :func:`measure`)."""
    x = evidence.valid()  # missing validation images: the user's error, before anything runs
    why = formats.missing_needs(fmt)
    if why:
        return None, why
    cls = formats.load_object(fmt.runner)
    if "cpu" in fmt.devices:
        with cls(bundle, fmt, device="cpu", threads=threads, path=staged, record=stub) as runner:
            return run_batches(runner, x, pp=evidence.pp), f"{fmt.name} on cpu"
    gpu, reason = probe_gpu()
    if gpu is None:
        return None, reason or "no CUDA GPU visible"
    try:
        with cls(bundle, fmt, device="cuda", threads=threads, path=staged, record=stub) as runner:
            return run_batches(runner, x, pp=evidence.pp), f"{fmt.name} on {gpu['name']}"
    except UserError as exc:  # e.g. this TensorRT cannot run the plan here
        return None, f"the {fmt.name} file could not run here: {exc}"


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
        fold = evidence.pp if stub["normalize_in_graph"] else None
        proxy_out = run_onnx(result.proxy, evidence.valid(), threads, result.proxy_optimize, fold)
        return (
            evidence.figures(proxy_out, stub["output"]),
            f"{result.proxy_scope}, run with ONNX Runtime on the CPU; {fmt.name} itself not run ({scope})",
        )
    return None, f"not measured: {fmt.name} not run ({scope}) and there is no proxy file"
