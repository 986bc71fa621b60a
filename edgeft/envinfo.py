"""``edgeft env``: what is installed and usable here, probed without failing."""

from __future__ import annotations

import os
import platform

from edgeft.provenance import package_version

# What the TensorRT exporter's paths were verified on (kept next to the probe so that
# `edgeft env` and the README say the same thing).
TRT_VERIFIED = {
    "strongly-typed": "built for real with TensorRT-RTX 1.7 on a CPU-only machine (parse + serialize; "
    "running the engine needs a GPU)",
    "builder flags + entropy calibrator (TensorRT 8.5-10)": "follows NVIDIA's documented API; "
    "not run here (no TensorRT, no GPU); tests skip with the reason",
}


def _try(fn):
    try:
        return fn()
    except Exception as exc:  # a probe must never take `edgeft env` down
        return {"error": f"{exc.__class__.__name__}: {exc}"}


def _torch() -> dict:
    if package_version("torch") is None:
        return {"installed": False}
    import torch

    info = {
        "installed": True,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_build": torch.version.cuda,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        info["capability"] = f"sm_{major}{minor}"
    from edgeft.tvfix import ensure_torchvision, workaround_applied

    tv = _try(lambda: ensure_torchvision().__version__)
    info["torchvision"] = tv
    info["torchvision_ops_workaround"] = workaround_applied()
    return info


def _onnxruntime() -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"installed": False, "hint": "pip install onnxruntime (CPU) or onnxruntime-gpu"}
    return {
        "installed": True,
        "version": ort.__version__,
        "providers": ort.get_available_providers(),
        "package": "onnxruntime-gpu" if package_version("onnxruntime-gpu") else "onnxruntime",
    }


def _tensorrt() -> dict:
    out = {}
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            mod = __import__(name)
            out[name] = {"installed": True, "version": str(mod.__version__)}
        except Exception as exc:
            out[name] = {"installed": False, "reason": str(exc).splitlines()[0][:120]}
    out["verified"] = TRT_VERIFIED
    return out


def _opencv() -> dict:
    try:
        import cv2
    except ImportError:
        return {"installed": False}
    build = cv2.getBuildInformation()
    gst = None
    for line in build.splitlines():
        if "GStreamer" in line:
            gst = line.split(":", 1)[-1].strip()
            break
    return {"installed": True, "version": cv2.__version__, "gstreamer": gst or "NO"}


def _jetson() -> dict:
    from benchmarks.jetson import is_jetson, jetson_info

    return jetson_info() if is_jetson() else {"jetson": False}


def collect() -> dict:
    """Everything ``edgeft env`` reports, as a dict."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "packages": {
            p: package_version(p)
            for p in ("edgeft", "fastai", "timm", "onnx", "onnxslim", "numpy", "pillow")
        },
        "torch": _try(_torch),
        "onnxruntime": _try(_onnxruntime),
        "tensorrt": _try(_tensorrt),
        "opencv": _try(_opencv),
        "jetson": _try(_jetson),
    }
