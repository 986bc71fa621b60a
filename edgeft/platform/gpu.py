"""Which GPU and which Jetson release this machine has, for TensorRT engine records.

A TensorRT plan only runs on the TensorRT version and the GPU it was built with, so each
engine record carries what :func:`describe_device` finds here, and a loader compares it
with what it finds on the device (see :func:`exporters.tensorrt_build.check_engine_compatible`).

Everything is probed lazily, with whatever the machine has: the CUDA driver library
through ctypes (every machine that runs TensorRT has it), ``cuda-python``, ``pycuda``,
``torch`` (NVIDIA's Jetson wheels have CUDA) or ``nvidia-smi``. None of them is required;
when no probe finds a GPU the record says why instead of guessing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


class _NoGPU(Exception):
    """A probe could not run or found no GPU; the message says why."""


class _NoDriver(_NoGPU):
    """No NVIDIA driver library at all: every other probe would load the same library."""


def _gpu(name: str, major: int, minor: int, source: str) -> dict:
    return {
        "name": name.strip(),
        "compute_capability": f"{major}.{minor}",
        "sm": f"sm_{major}{minor}",
        "source": source,
    }


def _probe_libcuda() -> dict:
    """The CUDA driver API through ctypes: present wherever TensorRT can run, Jetson included."""
    import ctypes
    import ctypes.util

    lib = None
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None and ctypes.util.find_library("cuda"):
        lib = ctypes.CDLL(ctypes.util.find_library("cuda"))
    if lib is None:
        raise _NoDriver("CUDA driver library (libcuda) not found: no NVIDIA driver here")
    count, dev, major, minor = (ctypes.c_int() for _ in range(4))
    if rc := lib.cuInit(0):
        raise _NoGPU(f"cuInit: CUDA error {rc}")
    if (rc := lib.cuDeviceGetCount(ctypes.byref(count))) or count.value < 1:
        raise _NoGPU(f"no CUDA device (error {rc})")
    name = ctypes.create_string_buffer(256)
    if lib.cuDeviceGet(ctypes.byref(dev), 0) or lib.cuDeviceGetName(name, 256, dev):
        raise _NoGPU("cuDeviceGet/cuDeviceGetName failed")
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 (cuda.h)
    if lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) or lib.cuDeviceGetAttribute(
        ctypes.byref(minor), 76, dev
    ):
        raise _NoGPU("cuDeviceGetAttribute failed")
    return _gpu(name.value.decode(errors="replace"), major.value, minor.value, "libcuda")


def _probe_cuda_python() -> dict:
    try:  # cuda-python >= 12.6 moved the bindings; older releases (JetPack 5/6 era) keep `cuda.cudart`
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise _NoGPU("not installed") from exc
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count < 1:
        raise _NoGPU(f"cudaGetDeviceCount: {err}")
    err, prop = cudart.cudaGetDeviceProperties(0)
    if err != cudart.cudaError_t.cudaSuccess:
        raise _NoGPU(f"cudaGetDeviceProperties: {err}")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return _gpu(name.rstrip("\x00"), prop.major, prop.minor, "cuda-python")


def _probe_pycuda() -> dict:
    try:
        import pycuda.driver as drv
    except ImportError as exc:
        raise _NoGPU("not installed") from exc
    try:
        drv.init()
        if drv.Device.count() < 1:
            raise _NoGPU("no CUDA device")
        dev = drv.Device(0)
        major, minor = dev.compute_capability()
        return _gpu(dev.name(), major, minor, "pycuda")
    except drv.Error as exc:
        raise _NoGPU(str(exc)) from exc


def _probe_torch() -> dict:
    try:
        import torch
    except ImportError as exc:
        raise _NoGPU("not installed") from exc
    if not torch.cuda.is_available():
        raise _NoGPU(f"torch {torch.__version__} sees no CUDA device")
    major, minor = torch.cuda.get_device_capability(0)
    return _gpu(torch.cuda.get_device_name(0), major, minor, "torch")


def _probe_nvidia_smi() -> dict:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise _NoGPU("not found")
    # `compute_cap` needs a driver from 2022 or later; Jetson's nvidia-smi may not report it.
    cmd = [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise _NoGPU(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    first = out.strip().splitlines()[0] if out.strip() else ""
    match = re.fullmatch(r"(.+),\s*(\d+)\.(\d+)", first)
    if not match:
        raise _NoGPU(f"unexpected output {first!r}")
    return _gpu(match.group(1), int(match.group(2)), int(match.group(3)), "nvidia-smi")


# Order: the driver library every NVIDIA GPU machine has, then the Python bindings users have.
_PROBES = (
    ("libcuda", _probe_libcuda),
    ("cuda-python", _probe_cuda_python),
    ("pycuda", _probe_pycuda),
    ("torch", _probe_torch),
    ("nvidia-smi", _probe_nvidia_smi),
)


def probe_gpu(probes=_PROBES) -> tuple[dict | None, str | None]:
    """Find GPU 0's name and compute capability.

    Returns:
        ``(gpu, None)`` with ``gpu = {name, compute_capability, sm, source}``, or
        ``(None, reason)`` where ``reason`` lists what each probe said.
    """
    reasons = []
    for name, probe in probes:
        try:
            return probe(), None
        except _NoDriver as exc:  # skip the rest: importing torch just to learn this is slow
            reasons.append(f"{name}: {exc}")
            break
        except _NoGPU as exc:
            reasons.append(f"{name}: {exc}")
        except Exception as exc:  # a broken driver install must not stop an export record
            reasons.append(f"{name}: {type(exc).__name__}: {exc}")
    return None, "no CUDA GPU visible (" + "; ".join(reasons) + ")"


def jetson_release(root: str | Path = "/") -> dict | None:
    """The Jetson Linux (L4T) release, board model and JetPack version, or None off a Jetson.

    ``/etc/nv_tegra_release`` reads like ``# R36 (release), REVISION: 4.3, ...``, meaning
    L4T 36.4.3. The parsing is bench's Jetson probe (:mod:`edgeft.platform.jetson`), so an
    engine record and a bench report name a device the same way. JetPack is recorded only
    when it is known exactly (the ``nvidia-jetpack`` package or an exact L4T match), never
    an approximate family guess, because an engine record is used to refuse mismatches.
    """
    from edgeft.platform.jetson import jetpack_version, parse_nv_tegra_release, read_model

    release = Path(root) / "etc" / "nv_tegra_release"
    if not release.is_file():
        return None
    text = release.read_text(errors="replace")
    l4t = parse_nv_tegra_release(text)
    info: dict = {
        "l4t": l4t["version"] if l4t else None,
        "jetpack": None,
        "model": read_model(str(root)),
        "nv_tegra_release": text.strip(),
    }
    if str(root) == "/":
        jetpack, _ = jetpack_version(l4t)
        if jetpack and not jetpack["approximate"]:
            info["jetpack"] = jetpack["version"]
    return info


def describe_device() -> dict:
    """GPU name and compute capability, and the Jetson release where there is one.

    Returns:
        ``{"gpu": {...} | None, "gpu_reason": str | None, "jetson": {...} | None}``.
    """
    gpu, reason = probe_gpu()
    return {"gpu": gpu, "gpu_reason": reason, "jetson": jetson_release()}
