"""This CPU's model and the instruction sets that decide int8 and bf16 speed.

Recorded with every CPU artifact and every figure edgeft measures: the same INT8 file is
1.4x faster than FP32 on an AVX2-only CPU and more with VNNI or AMX (see the README).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path

#: Flags that matter for int8 and bf16 kernels (x86 and ARM names as /proc/cpuinfo lists them).
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimddp",
    "i8mm",
    "bf16",
)


def _cpuinfo() -> tuple[str | None, set[str]]:
    model, flags = None, set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key == "model name" and model is None:
                model = line.split(":", 1)[1].strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return model, flags


def cpu_isa() -> dict:
    """``{"model", "machine", "isa": [flags that matter], "int8": ..., "bf16": ...}``.

    ``int8`` names the int8 dot-product family (``amx``, ``vnni``, ``avx2`` (no VNNI:
    uint8 x int8 products saturate), ``arm-dot``, or ``none``); ``bf16`` whether the CPU
    computes bf16 natively (AMX, AVX512-BF16, ARM bf16).
    """
    model, flags = _cpuinfo()
    have = [f for f in ISA_FLAGS if f in flags]
    if "amx_int8" in flags:
        int8 = "amx"
    elif flags & {"avx512_vnni", "avx_vnni"}:
        int8 = "vnni"
    elif "asimddp" in flags:
        int8 = "arm-dot"
    elif "avx2" in flags:
        int8 = "avx2"
    else:
        int8 = "none"
    bf16 = bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})
    return {
        "model": model or platform.processor() or None,
        "machine": platform.machine().lower(),
        "isa": have,
        "int8": int8,
        "bf16": bf16,
    }


def cpu_int8_info() -> dict:
    """This machine's int8 dot-product instructions and whether 7-bit weights are needed."""
    info = cpu_isa()
    x86 = info["machine"] in ("x86_64", "amd64", "i686", "x86")
    reduce = x86 and info["int8"] not in ("vnni", "amx")
    why = (
        "x86-64 without VNNI: uint8 x int8 products saturate in int16 (vpmaddubsw); weights use 7 bits"
        if reduce
        else "int8 dot products without saturation here (VNNI, AMX or ARM): full 8-bit weights"
    )
    return {
        "machine": info["machine"],
        "cpu": info["model"],
        "isa": "+".join(sorted(info["isa"])) or None,
        "int8": info["int8"],
        "reduce_range": reduce,
        "reason": why,
    }


def describe_cpu() -> str:
    """One line naming the CPU and its int8/bf16 instruction sets, for figures and notes."""
    info = cpu_isa()
    return f"{info['model'] or info['machine']} ({', '.join(info['isa']) or 'no SIMD flags read'})"


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
        **{k: v for k, v in cpu_isa().items() if k in ("isa", "int8", "bf16")},
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


def isa_mismatch(exported_on: dict | None) -> str | None:
    """Why an INT8 artifact made on another CPU family runs worse here, or None.

    Args:
        exported_on: the ``target.exported_on`` record of the artifact (:func:`cpu_int8_info`
            of the machine that quantized it).
    """
    if not isinstance(exported_on, dict) or "reduce_range" not in exported_on:
        return None
    here = cpu_int8_info()
    if here["machine"] != exported_on.get("machine"):
        return None  # an x86 file on ARM (or back) is a different question: no advice here
    if exported_on["reduce_range"] and not here["reduce_range"]:
        return (
            "this INT8 file was quantized with 7-bit weights on a CPU without VNNI; this CPU has "
            f"{here['int8']} int8 instructions: re-export it here (edgeft export --int8 --force) "
            "for full 8-bit weights"
        )
    if not exported_on["reduce_range"] and here["reduce_range"]:
        return (
            "this INT8 file has full 8-bit weights from a CPU with VNNI; this CPU has none, so "
            "uint8 x int8 products can saturate: re-export it here (edgeft export --int8 --force)"
        )
    return None
