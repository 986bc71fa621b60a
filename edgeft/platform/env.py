"""What is installed and usable here, and the machine a measurement was made on.

The one environment probe: ``edgeft env`` prints :func:`collect`; every bench report
embeds :func:`capture` (CPU model and its int8/bf16 instruction sets, cores, threads, RAM
and load, GPU name, driver and CUDA, ONNX Runtime version and providers, TensorRT version,
and on a Jetson the module, L4T/JetPack release, power mode and clock lock). GPU and
Jetson release come from :func:`edgeft.platform.gpu.describe_device`, the same probe that
stamps TensorRT engine records. Each probe tolerates what is missing: its field says why.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

from edgeft.platform.cpu import _read, cpu_info, cpu_isa, ram_info
from edgeft.platform.gpu import describe_device
from edgeft.platform.jetson import is_jetson, jetson_info
from edgeft.platform.tvfix import ensure_torchvision, workaround_applied
from edgeft.provenance import package_version, provenance

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

    return jetson_info() if is_jetson() else {"jetson": False}


def collect() -> dict:
    """Everything ``edgeft env`` reports, as a dict."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _try(cpu_isa),
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


def _nvidia_driver() -> dict:
    """NVIDIA driver version (nvidia-smi, else /proc/driver/nvidia/version) and CUDA driver API."""
    out: dict = {"driver": None, "cuda_driver_api": None}
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            done = subprocess.run(
                [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if done.returncode == 0 and done.stdout.strip():
                out["driver"] = done.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    text = _read("/proc/driver/nvidia/version") if out["driver"] is None else None
    if text and (m := re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)):
        out["driver"] = m.group(1)
    try:  # the CUDA version the driver supports, e.g. 12040 -> "12.4"
        import ctypes

        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 and v.value:
            out["cuda_driver_api"] = f"{v.value // 1000}.{v.value % 1000 // 10}"
    except OSError:
        pass
    return out


def gpu_info() -> dict:
    """GPU 0 (name, compute capability) with driver and CUDA versions, or why there is none."""

    dev = describe_device()
    out = {"gpu": dev["gpu"], "reason": dev["gpu_reason"], "jetson_release": dev["jetson"]}
    if dev["gpu"] is not None:
        out.update(_nvidia_driver())
    return out


def torch_info(device: str) -> dict | None:
    """PyTorch version, its CUDA build, threads, and the TF32 switches (CUDA FP32 numbers)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    info = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "threads": torch.get_num_threads(),
    }
    if device in ("cuda", "jetson") and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = {
            "cudnn": torch.backends.cudnn.allow_tf32,
            "matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    return info


def onnxruntime_info() -> dict | None:
    """ONNX Runtime version, its package flavour and execution providers."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    return {
        "version": ort.__version__,
        "providers": list(ort.get_available_providers()),
        "package": "onnxruntime-gpu" if package_version("onnxruntime-gpu") else "onnxruntime",
    }


def tensorrt_info() -> dict:
    """Versions of TensorRT and TensorRT-RTX where importable (Jetson's has no pip metadata)."""
    out = {}
    for mod in ("tensorrt", "tensorrt_rtx"):
        if importlib.util.find_spec(mod) is None:
            out[mod] = None
            continue
        try:
            out[mod] = str(__import__(mod).__version__)
        except Exception as exc:  # a broken install must not stop a report
            out[mod] = f"import failed: {str(exc).splitlines()[0][:120]}"
    return out


def threads_info(threads: int | None) -> dict:
    """The intra-op threads asked for, and what each framework's default means."""
    return {
        "requested": threads,
        "onnxruntime": threads or "default (one per physical core)",
        "torch": threads or "default (torch.get_num_threads)",
    }


def capture(device: str, threads: int | None = None, jetson: dict | None = None) -> dict:
    """The environment section of a bench report.

    Args:
        device: ``cpu``, ``cuda`` or ``jetson`` (the bench's ``--device``).
        threads: ``--threads`` (None: framework defaults).
        jetson: :func:`edgeft.platform.jetson.jetson_info` output when on a Jetson.
    """
    return {
        "device": device,
        "host": platform.node(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _try(cpu_info),
        "ram": _try(ram_info),
        "threads": threads_info(threads),
        "gpu": _try(gpu_info),
        "torch": _try(lambda: torch_info(device)),
        "onnxruntime": _try(onnxruntime_info),
        "tensorrt": _try(tensorrt_info),
        "jetson": jetson,
        "provenance": provenance(),
    }
