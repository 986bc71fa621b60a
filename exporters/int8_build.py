"""One INT8 Q/DQ file for a bundle: calibrate on real images, quantize for a target, measure
the accuracy drop on the validation images, and keep sensitive layers in float until it fits.

Used for ``onnx-int8`` (target ``ort-cpu``) and for the Q/DQ ONNX that TensorRT's strongly
typed path builds from (target ``tensorrt``). Both start from the same calibration ranges,
cached in the bundle under ``calibration/`` and keyed to the FP32 model, the preprocessing,
the calibration images and the method.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from exporters import int8_fallback as fb
from exporters import ort_int8

SENSITIVITY_IMAGES = 200  # calibration images the per-layer pass runs on (100 gave unstable ranks)


def ranges_key(onnx_sha: str, pp: dict, method: str, calib_fingerprint: str) -> str:
    """A short key naming one calibration result."""
    from edgeft.provenance import package_version

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


def cached_ranges(
    ctx, fp32_path: Path, fp32_sha: str, normalize_in_graph: bool
) -> tuple[dict, dict]:
    """Activation ranges of ``fp32_path`` for the export's calibration set and method, from the
    bundle's cache when the key matches. Returns ``(ranges, calibration record)``."""
    opts = ctx.opts
    calib = ctx.calibration()
    key = ranges_key(fp32_sha, ctx.pp.to_dict(), opts.calib_method, calib.fingerprint())
    name = f"calibration/ranges-{opts.calib_method}-{key}.json"
    record = {**calib.record(), "method": opts.calib_method, "cache": name}
    cache = ctx.bundle.path / name
    if cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return data["ranges"], {**record, "reused_cache": True}
        except (OSError, ValueError):
            pass  # unreadable cache: recompute and replace it
    start = time.perf_counter()
    with ctx.step(f"calibrating ({opts.calib_method}, {len(calib.x)} images)"):
        ranges = ort_int8.calibrate(
            fp32_path, ctx.model_input(calib.x, normalize_in_graph), opts.calib_method
        )
    ctx.write_aux(
        name, json.dumps({"key": key, "method": opts.calib_method, "ranges": ranges}).encode()
    )
    return ranges, {
        **record,
        "reused_cache": False,
        "seconds": round(time.perf_counter() - start, 2),
    }


def build_int8(
    ctx,
    fp32_path: Path,
    fp32_sha: str,
    out_path: Path,
    target: str,
    normalize_in_graph: bool,
    out_kind: str,
) -> dict:
    """Quantize ``fp32_path`` for ``target`` into ``out_path`` (see the module docstring).

    Returns:
        ``{"calibration", "recipe", "float_nodes", "fallback", "figures", "passes"}``; the
        figures are :func:`edgeft.parity.compare`'s for the file written (None with --no-check).
    """
    import onnx

    opts = ctx.opts
    ranges, calib_record = cached_ranges(ctx, fp32_path, fp32_sha, normalize_in_graph)
    reduce = ort_int8.cpu_int8_info()["reduce_range"] if target == "ort-cpu" else False
    tmp_q = out_path.with_name(out_path.name + ".q")
    try:
        recipe = ort_int8.quantize(fp32_path, tmp_q, ranges, target, reduce_range=reduce)
        qmodel = onnx.load(str(tmp_q))
    finally:
        tmp_q.unlink(missing_ok=True)
    info = {
        "calibration": calib_record,
        "recipe": recipe,
        "float_nodes": [],
        "fallback": None,
        "figures": None,
        "passes": None,
        "evaluated_with": "onnxruntime CPU, graph optimisations on (the kernels that deploy it)"
        if target == "ort-cpu"
        else "onnxruntime CPU without graph optimisation: Q/DQ simulated in float",
    }
    if not opts.check:
        fb.save_model(qmodel, out_path)
        return info
    fp32 = onnx.load(str(fp32_path))
    x_valid = ctx.model_input(ctx.valid().x, normalize_in_graph)
    last = {}

    optimize = target == "ort-cpu"  # TensorRT's file: Q/DQ simulated (see int8_fallback._session)

    def evaluate(model):
        out = fb.run_model(model, x_valid, threads=ctx.threads, optimize=optimize)
        figures = ctx.figures(out, out_kind)
        last["figures"] = figures
        ok = not ctx.breaches(figures, "int8")
        return ok, figures["accuracy_drop_pp"], figures["agreement"]

    with ctx.step("measuring the INT8 accuracy drop"):
        ok, drop, agree = evaluate(qmodel)
    model = qmodel
    if not ok:
        calib_x = ctx.model_input(ctx.calibration().x[:SENSITIVITY_IMAGES], normalize_in_graph)
        ref = fb.run_model(fp32, calib_x, threads=ctx.threads, optimize=False)
        n = len(fb.candidates(qmodel))
        with ctx.bar(f"per-layer sensitivity ({n} layers)", n) as advance:
            base_kl, ranked = fb.sensitivity(
                qmodel,
                fp32,
                calib_x,
                ref,
                probs=out_kind == "probs",
                threads=ctx.threads,
                progress=advance,
                optimize=optimize,
            )
        budget = (
            opts.max_float_layers if opts.max_float_layers is not None else fb.default_budget(n)
        )
        with ctx.step("keeping sensitive layers in float"):
            result = fb.fall_back(qmodel, fp32, ranked, evaluate, budget)
        model = result["model"]
        info["float_nodes"] = result["float_nodes"]
        info["fallback"] = {
            "budget": budget,
            "kl_all_int8": base_kl,
            "steps": result["steps"],
            "ranking": [
                {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
                for r in ranked[: max(10, budget)]
            ],
        }
        ok = result["passes"]
    info["figures"], info["passes"] = last["figures"], ok
    fb.save_model(model, out_path)
    return info
