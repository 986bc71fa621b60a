"""Commands and sysfs readings of a Jetson for bench reports: nvpmodel power mode, clock
lock (``jetson_clocks``), and the thermal trip points where throttling begins (see
:mod:`edgeft.platform.jetson` for the sources read). Functions take ``root`` and
``runner`` so tests can feed recorded outputs."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence

Runner = Callable[[Sequence[str]], "tuple[int, str] | None"]

_POWER_RE = re.compile(r"NV Power Mode:\s*(\S+)")
_CLOCK_CPU_RE = re.compile(
    r"^cpu(\d+):\s+(?:Online=(\d)\s+)?G\w*=\S+\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)",
    re.MULTILINE,
)
_CLOCK_DEV_RE = re.compile(
    r"^(GPU|EMC) MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)(?: FreqOverride=(\d+))?",
    re.MULTILINE,
)
_GPU_DEVFREQ_WORDS = ("gpu", "gv11b", "ga10b", "gp10b", "gb10b")


def run_command(argv: Sequence[str], timeout_s: float = 10.0) -> tuple[int, str] | None:
    """Run a tool and return ``(returncode, stdout + stderr)``; ``None`` if not installed.

    Looks in ``PATH`` and in /usr/sbin and /usr/bin (``nvpmodel`` lives in /usr/sbin,
    often not on a user's PATH).
    """
    path = os.pathsep.join(filter(None, (os.environ.get("PATH"), "/usr/sbin", "/usr/bin", "/sbin")))
    exe = shutil.which(argv[0], path=path)
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, done.stdout + done.stderr


def _read(root: str, *paths: str) -> str | None:
    for path in paths:
        try:
            with open(
                os.path.join(root, path.lstrip("/")), encoding="utf-8", errors="replace"
            ) as f:
                return f.read()
        except OSError:
            continue
    return None


def parse_nvpmodel_query(text: str) -> dict | None:
    """Parse ``nvpmodel -q``: ``{"name": "MAXN", "id": 0}`` (id None if not printed)."""
    m = _POWER_RE.search(text)
    if not m:
        return None
    after = text[m.end() :].split()
    mode_id = int(after[0]) if after and after[0].isdigit() else None
    return {"name": m.group(1), "id": mode_id}


def power_mode(runner: Runner = run_command) -> tuple[dict | None, str]:
    """The current nvpmodel power mode, with a reason when it cannot be read."""
    result = runner(["nvpmodel", "-q"])
    if result is None:
        return None, "nvpmodel not found"
    parsed = parse_nvpmodel_query(result[1])
    if parsed is None:
        return (
            None,
            f"nvpmodel -q exited {result[0]} without a power mode: {result[1].strip()[:200]}",
        )
    return parsed, ""


def parse_jetson_clocks_show(text: str) -> dict | None:
    """Parse ``jetson_clocks --show``; ``locked`` as defined in the module docstring."""
    cpus = [
        {"cpu": int(c), "online": online != "0", "min": int(lo), "max": int(hi), "cur": int(cur)}
        for c, online, lo, hi, cur in _CLOCK_CPU_RE.findall(text)
    ]
    if not cpus:
        return None
    devices = {
        name.lower(): {
            "min": int(lo),
            "max": int(hi),
            "cur": int(cur),
            **({"override": int(ov)} if ov else {}),
        }
        for name, lo, hi, cur, ov in _CLOCK_DEV_RE.findall(text)
    }
    online = [c for c in cpus if c["online"]]
    locked = all(c["min"] == c["max"] for c in online)
    if "gpu" in devices:
        locked = locked and devices["gpu"]["min"] == devices["gpu"]["max"]
    mode = _POWER_RE.search(text)
    return {
        "locked": locked,
        "source": "jetson_clocks --show",
        "cpus_online": len(online),
        "cpus_at_max_min": sum(c["min"] == c["max"] for c in online),
        "gpu": devices.get("gpu"),
        "emc": devices.get("emc"),
        "power_mode": mode.group(1) if mode else None,
    }


def _int_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def clocks_from_sysfs(root: str = "/") -> dict | None:
    """Compare minimum and maximum clocks in sysfs (no root needed); None if unreadable."""
    cpus = []
    for cpufreq in sorted(
        glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq"))
    ):
        online = _int_file(os.path.join(os.path.dirname(cpufreq), "online"))
        lo = _int_file(os.path.join(cpufreq, "scaling_min_freq"))
        hi = _int_file(os.path.join(cpufreq, "scaling_max_freq"))
        if online != 0 and lo is not None and hi is not None:
            cpus.append(lo == hi)
    if not cpus:
        return None
    gpu = None
    for node in sorted(glob.glob(os.path.join(root, "sys/class/devfreq/*"))):
        if any(word in os.path.basename(node).lower() for word in _GPU_DEVFREQ_WORDS):
            lo, hi = (
                _int_file(os.path.join(node, "min_freq")),
                _int_file(os.path.join(node, "max_freq")),
            )
            if lo is not None and hi is not None:
                gpu = {"min": lo, "max": hi, "cur": _int_file(os.path.join(node, "cur_freq"))}
                break
    locked = all(cpus) and (gpu is None or gpu["min"] == gpu["max"])
    return {
        "locked": locked,
        "source": "sysfs",
        "cpus_online": len(cpus),
        "cpus_at_max_min": sum(cpus),
        "gpu": gpu,
        "emc": None,
        "power_mode": None,
    }


def clocks_locked(root: str = "/", runner: Runner = run_command) -> tuple[dict | None, str]:
    """Clock state from ``jetson_clocks --show``, else from sysfs."""
    result = runner(["jetson_clocks", "--show"])
    if result is not None and (parsed := parse_jetson_clocks_show(result[1])):
        return parsed, ""
    why = (
        "jetson_clocks not found"
        if result is None
        else "jetson_clocks --show gave no clocks (root needed)"
    )
    parsed = clocks_from_sysfs(root)
    return (parsed, "") if parsed else (None, f"{why}, and cpufreq is not readable in sysfs")


def throttle_trip_points_c(root: str = "/") -> dict[str, float]:
    """Lowest ``passive`` trip point per thermal zone, keyed like tegrastats sensors."""
    limits: dict[str, float] = {}
    for zone in sorted(glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*"))):
        name = (_read(zone, "type") or "").strip()
        if not name:
            continue
        key = re.sub(r"[-_]therm(al)?$", "", name, flags=re.IGNORECASE).lower()
        for type_path in glob.glob(os.path.join(zone, "trip_point_*_type")):
            if (
                _read(os.path.dirname(type_path), os.path.basename(type_path)) or ""
            ).strip() != "passive":
                continue
            temp = _int_file(type_path.removesuffix("_type") + "_temp")
            if temp is not None and temp > 0:
                limits[key] = min(limits.get(key, float("inf")), temp / 1000.0)
    return limits
