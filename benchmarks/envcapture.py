"""What machine a bench report was measured on: every fact that moves its numbers.

CPU model and cores, the threads the runners used, RAM and load, GPU name, driver and
CUDA, ONNX Runtime version and providers, TensorRT version, and on a Jetson the module,
L4T/JetPack release, power mode and clock lock (:mod:`benchmarks.jetson`). GPU and Jetson
release come from :func:`exporters.tensorrt_device.describe_device`, the same probe that
stamps TensorRT engine records, so an engine record and a bench report describe a device
the same way. Each probe tolerates what is missing: its field says why instead.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

from edgeft.provenance import package_version, provenance


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpu_info() -> dict:
    """CPU model, logical and physical cores, the cores this process may use, load average."""
    text = _read("/proc/cpuinfo") or ""
    model = None
    for key in ("model name", "Model", "Hardware", "cpu model"):  # x86, then ARM boards
        if m := re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE):
            model = m.group(1).strip()
            break
    cores = {
        (m.group(1), m.group(2))
        for m in re.finditer(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.DOTALL)
    }
    info = {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    return info


def ram_info() -> dict:
    """Total and available memory in GiB (from /proc/meminfo)."""
    text = _read("/proc/meminfo") or ""
    out = {}
    for key, name in (("MemTotal", "total_gib"), ("MemAvailable", "available_gib")):
        if m := re.search(rf"^{key}:\s*(\d+) kB", text, re.MULTILINE):
            out[name] = round(int(m.group(1)) / 2**20, 2)
    return out


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
    from exporters.tensorrt_device import describe_device

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
        jetson: :func:`benchmarks.jetson.jetson_info` output when on a Jetson.
    """
    from edgeft.envinfo import _try  # a probe must never take a bench down

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
