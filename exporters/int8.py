"""INT8 Q/DQ files for a bundle: calibrate on real images, quantize for a target, and --
when a ``judge`` is given -- keep sensitive layers in float until the accuracy drop fits.

``build_ort`` is the leaf exporter of ``onnx-int8`` (target ``ort-cpu``);
:func:`quantize_qdq` also makes the Q/DQ ONNX that TensorRT's strongly typed path builds
from (target ``tensorrt``). Both start from the same calibration ranges, cached under the
bundle's ``calibration/`` folder and keyed to the FP32 model, the preprocessing, the
calibration images and the method.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgeft.atomic import write_bytes_atomic
from edgeft.console import console, progress
from edgeft.errors import UserError
from edgeft.parity import fold_input
from edgeft.platform.cpu import cpu_int8_info
from edgeft.provenance import package_version
from exporters import int8_fallback as fb
from exporters import ort_int8
from exporters.request import BuildRequest, BuildResult

SENSITIVITY_IMAGES = 200  # calibration images the per-layer pass runs on (100 gave unstable ranks)


@dataclass
class Options:
    """What the INT8 exporters take from ``edgeft export``'s options."""

    calib_method: str = "percentile"
    max_accuracy_drop: float = 1.0
    max_float_layers: int | None = None
    opset: int = 17


def preflight(options: Options) -> None:
    """Per-channel QuantizeLinear needs opset 13."""
    if options.opset < 13:
        raise UserError(
            f"--int8 needs --opset 13 or newer (per-channel QuantizeLinear); got {options.opset}"
        )


def ranges_key(onnx_sha: str, pp: dict, method: str, calib_fingerprint: str) -> str:
    """A short key naming one calibration result."""
    ort_version = ".".join((package_version("onnxruntime") or "?").split(".")[:2])
    blob = json.dumps(
        {
            "onnx": onnx_sha,
            "pp": pp,
            "method": method,
            "data": calib_fingerprint,
            "ort": ort_version,
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _inputs(req: BuildRequest, x):
    return fold_input(x, req.pp) if req.normalize_in_graph else x


def cached_ranges(req: BuildRequest) -> tuple[dict, dict]:
    """Activation ranges of ``req.source`` for the calibration set and method, from the
    cache when the key matches. Returns ``(ranges, calibration record)``."""
    method = req.options.calib_method
    calib = req.calibration()
    key = ranges_key(req.source_sha256, req.pp.to_dict(), method, calib.fingerprint())
    name = f"ranges-{method}-{key}.json"
    record = {**calib.record(), "method": method, "cache": f"calibration/{name}"}
    cache = req.cache / name if req.cache is not None else None
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return data["ranges"], {**record, "reused_cache": True}
        except (OSError, ValueError):
            pass  # unreadable cache: recompute and replace it
    start = time.perf_counter()
    ranges = ort_int8.calibrate(req.source, _inputs(req, calib.x), method, workdir=req.workdir)
    seconds = time.perf_counter() - start
    console().print(f"calibrating ({method}, {len(calib.x)} images): {seconds:.1f} s")
    if cache is not None:
        payload = json.dumps({"key": key, "method": method, "ranges": ranges}).encode()
        write_bytes_atomic(cache, payload)
    return ranges, {**record, "reused_cache": False, "seconds": round(seconds, 2)}


def _fallback(req: BuildRequest, qmodel, fp32, optimize: bool):
    """Put the most sensitive layers back into float until ``req.judge`` passes."""
    calib_x = _inputs(req, req.calibration().x[:SENSITIVITY_IMAGES])
    ref = fb.run_model(fp32, calib_x, threads=req.threads, optimize=False)
    n = len(fb.candidates(qmodel))
    with progress(f"per-layer sensitivity ({n} layers)", n) as advance:
        base_kl, ranked = fb.sensitivity(
            qmodel,
            fp32,
            calib_x,
            ref,
            probs=req.output == "probs",
            threads=req.threads,
            progress=advance,
            optimize=optimize,
        )
    o = req.options
    budget = o.max_float_layers if o.max_float_layers is not None else fb.default_budget(n)

    def evaluate(model):
        j = req.judge(model, optimize)
        return j.passed, j.accuracy_drop_pp, j.agreement

    result = fb.fall_back(qmodel, fp32, ranked, evaluate, budget)
    info = {
        "budget": budget,
        "kl_all_int8": base_kl,
        "steps": result["steps"],
        "ranking": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
            for r in ranked[: max(10, budget)]
        ],
    }
    return result["model"], result["float_nodes"], info


def quantize_qdq(req: BuildRequest, target: str, out: Path) -> dict:
    """Quantize ``req.source`` for ``target`` (``ort-cpu`` or ``tensorrt``) into ``out``.

    With a ``req.judge``, a model that fails it gets its most sensitive layers back in
    float (:mod:`exporters.int8_fallback`) until it passes or the budget is spent.

    Returns:
        ``{"calibration", "recipe", "float_nodes", "fallback", "evaluated_with"}``.
    """
    import onnx

    ranges, calib_record = cached_ranges(req)
    reduce = cpu_int8_info()["reduce_range"] if target == "ort-cpu" else False
    tmp_q = req.workdir / f"{out.name}.q"
    recipe = ort_int8.quantize(req.source, tmp_q, ranges, target, reduce_range=reduce)
    qmodel = onnx.load(str(tmp_q))
    tmp_q.unlink(missing_ok=True)
    # TensorRT's file is judged with Q/DQ simulated in float (see int8_fallback._session).
    optimize = target == "ort-cpu"
    info = {
        "calibration": calib_record,
        "recipe": recipe,
        "float_nodes": [],
        "fallback": None,
        "evaluated_with": "onnxruntime CPU, graph optimisations on (the kernels that deploy it)"
        if optimize
        else "onnxruntime CPU without graph optimisation: Q/DQ simulated in float",
    }
    model = qmodel
    if req.judge is not None:
        t0 = time.perf_counter()
        if not req.judge(qmodel, optimize).passed:
            fp32 = onnx.load(str(req.source))
            model, info["float_nodes"], info["fallback"] = _fallback(req, qmodel, fp32, optimize)
        console().print(f"measuring the INT8 accuracy drop: {time.perf_counter() - t0:.1f} s")
    fb.save_model(model, out)
    return info


def build_ort(req: BuildRequest) -> BuildResult:
    """Leaf exporter of ``onnx-int8``: a Q/DQ file for ONNX Runtime's CPU int8 kernels."""
    info = quantize_qdq(req, "ort-cpu", req.out)
    notes = []
    if info["float_nodes"]:
        notes.append(
            f"onnx-int8 keeps {len(info['float_nodes'])} layer(s) in float: {', '.join(info['float_nodes'])}"
        )
    build = {
        **info["recipe"],
        "calibration": info["calibration"],
        "float_nodes": info["float_nodes"],
        "int8": {"fallback": info["fallback"]},
        "max_accuracy_drop_pp": req.options.max_accuracy_drop,
        "opset": req.options.opset,
        "evaluated_with": info["evaluated_with"],
    }
    target = {
        "runtime": "onnxruntime",
        "provider": "CPUExecutionProvider",
        "exported_on": cpu_int8_info(),
        "optimized_graph": ort_int8.ort_graph_summary(req.out),
    }
    return BuildResult(build=build, target=target, notes=notes)
