"""Parse NVIDIA Jetson ``tegrastats`` output and sample it while a benchmark runs.

``tegrastats`` prints one line per interval. Its format changed across Jetson
generations, and this module reads all the forms seen in real output (the tests quote
lines from Nano, TX1/TX2, AGX Xavier, Orin NX and AGX Orin with their sources):

* an optional ``MM-DD-YYYY HH:MM:SS`` prefix (JetPack 5 and later);
* ``RAM used/totalMB``, ``SWAP used/totalMB (cached NMB)``;
* ``CPU [12%@1190,off,...]`` (per-core load and MHz, ``off`` for a powered-down core)
  and the older ``cpu [17%,13%]@408`` (one frequency for all cores);
* engines ``NAME load%@MHz``, ``NAME load%@[MHz,MHz]``, ``NAME load%``, ``NAME MHz``,
  ``NAME off`` (``GR3D_FREQ`` / ``GR3D`` is the GPU, ``EMC_FREQ`` / ``EMC`` the memory);
* temperatures ``CPU@45.5C``, ``tj@65.562C``, JetPack 7's ``cpu@52.9C/52.9C``. A value
  of -256C means the sensor's domain is powered off (``GPU@-256C`` on an idle AGX
  Orin); it is listed in ``temps_off``, not averaged;
* power rails in milliwatts: ``POM_5V_IN 3112/3112`` and ``VDD_IN 5000/5100`` (older:
  current/average), ``VDD_GPU_SOC 2389mW/2389mW`` (JetPack 5+), and JetPack 7's
  ``VIN_SYS_5V0 5500mW/5500mW/5500mW`` (current/average/a third value kept as
  ``extra_mw`` because its meaning is not documented). ``NC`` (not connected) rails
  are dropped. The average is tegrastats' own running average since it started, so
  :func:`summarize` uses the instantaneous value of each sample.

Anything else on a line is ignored. Without root, tegrastats omits some fields (the
GPU clock on older JetPacks); the parser reports only what is there.
"""

from __future__ import annotations

import collections
import contextlib
import re
from datetime import datetime

_TS_RE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU_RE = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_CORE_RE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_ENGINE_RE = re.compile(
    r"(?<![\w@])([A-Z][A-Z0-9_]*) (off|(?:\d+%)?@\[[\d,]*\]|\d+%@\d+|\d+%|@\d+|\d+)(?=\s|$)"
)
_TEMP_RE = re.compile(r"(?<![\w@])([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)?(?=\s|$)")
_RAIL_RE = re.compile(r"(?<![\w@])([A-Za-z][\w]*) (\d+(?:mW)?(?:/\d+(?:mW)?)+|\d+mW)(?=\s|$)")
_SENSOR_OFF_C = -256.0

#: Rails that measure the whole module's input, in order of preference. Nano/TX1 name it
#: POM_5V_IN; TX2, Xavier NX, Orin NX and Orin Nano name it VDD_IN (NVIDIA forum
#: "power-consumption-monitoring/73608/8": POM_5V_IN "represents the total power
#: consumption"; "interpretation-of-jetson-nx-power-rail/200883": "VDD_IN is the total
#: power of module"). AGX Xavier (GPU, CPU, SOC, CV, VDDRQ, SYS5V) and AGX Orin
#: (VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO) expose no input rail:
#: VIN_SYS_5V0 / SYS5V is only the module's 5 V branch (forum
#: "what-does-sys5v-power-mean-in-tegrastats/75574", jetson_stats issue #344), so there
#: :func:`summarize` sums every rail and says so ("sum_of_rails", an approximation).
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")

THROTTLE_DEFINITION = (
    "tegrastats has no throttle flag. 'throttled' here means at least one of: "
    "(1) the GPU (GR3D) clock, while its load was >= high_load_pct, fell below "
    "drop_ratio x the highest GPU clock seen earlier in the run; (2) the same for a CPU "
    "core; (3) a temperature reached a limit given in temp_limits_c (for example the "
    "kernel's passive trip points, see edgeft.platform.jetson.throttle_trip_points_c). It is "
    "a sign of thermal/power capping, not proof: a clock change by the governor or an "
    "nvpmodel change during the run looks the same."
)


def _engine(value: str) -> dict:
    if value == "off":
        return dict(load=None, freq_mhz=None, freqs_mhz=[], off=True)
    load_s, at, freq_s = value.partition("@")
    load = int(load_s[:-1]) if load_s.endswith("%") else None
    if not at and load is None:  # a bare number: the engine clock in MHz (e.g. "APE 25")
        freq_s = value
    freqs = [int(f) for f in freq_s.strip("[]").split(",") if f]
    return dict(load=load, freq_mhz=max(freqs) if freqs else None, freqs_mhz=freqs, off=False)


def _cpus(inner: str, global_freq: str | None) -> list[dict]:
    cores = []
    for item in inner.split(","):
        item = item.strip()
        if m := _CORE_RE.match(item):
            freq = m.group(2) or global_freq
            cores.append(
                dict(load=int(m.group(1)), freq_mhz=int(freq) if freq else None, online=True)
            )
        else:  # "off" (powered down) or the blank slot of the old "[X%,Y%, , ]@Z" form
            cores.append(dict(load=None, freq_mhz=None, online=False if item == "off" else None))
    return cores


def parse_line(line: str) -> dict:
    """Parse one tegrastats line into a dict; fields not on the line are ``None``/empty.

    Keys: ``timestamp`` (ISO string or None), ``ram`` and ``swap`` (``used_mb``,
    ``total_mb``[, ``cached_mb``]), ``cpu`` (list of ``load``/``freq_mhz``/``online``),
    ``gpu`` and ``emc`` (``load``, ``freq_mhz``, ``freqs_mhz``, ``off``), ``engines``
    (every engine by name), ``temps_c`` (sensor -> deg C), ``temps_off`` (sensors at
    -256C) and ``rails`` (name -> ``cur_mw``, ``avg_mw``[, ``extra_mw``]).
    """
    out: dict = dict.fromkeys(("timestamp", "ram", "swap", "gpu", "emc"))
    out.update(cpu=[], engines={}, temps_c={}, temps_off=[], rails={})
    m = _TS_RE.match(line)
    if m:
        with contextlib.suppress(ValueError):
            out["timestamp"] = datetime.strptime(m.group(1), "%m-%d-%Y %H:%M:%S").isoformat()
    if m := _RAM_RE.search(line):
        out["ram"] = {"used_mb": int(m.group(1)), "total_mb": int(m.group(2))}
    if m := _SWAP_RE.search(line):
        cached = int(m[3]) if m[3] else None
        out["swap"] = dict(used_mb=int(m[1]), total_mb=int(m[2]), cached_mb=cached)
    if m := _CPU_RE.search(line):
        out["cpu"] = _cpus(m.group(1), m.group(2))
    for name, value in _ENGINE_RE.findall(line):
        out["engines"][name] = _engine(value)
    out["gpu"] = out["engines"].get("GR3D_FREQ") or out["engines"].get("GR3D")
    out["emc"] = out["engines"].get("EMC_FREQ") or out["engines"].get("EMC")
    for name, value in _TEMP_RE.findall(line):
        if float(value) == _SENSOR_OFF_C:
            out["temps_off"].append(name)
        else:
            out["temps_c"][name] = float(value)
    for name, value in _RAIL_RE.findall(line):
        if name in ("NC", "RAM", "SWAP"):
            continue
        numbers = [int(v.removesuffix("mW")) for v in value.split("/")]
        rail = {"cur_mw": numbers[0], "avg_mw": numbers[1] if len(numbers) > 1 else None}
        if len(numbers) > 2:
            rail["extra_mw"] = numbers[2:]
        out["rails"][name] = rail
    return out


def _has_data(sample: dict) -> bool:
    return bool(
        sample["ram"] or sample["cpu"] or sample["rails"] or sample["temps_c"] or sample["gpu"]
    )


def _stats(values: list[float], scale: float = 1.0, digits: int = 3) -> dict | None:
    if not values:
        return None
    return {
        "avg": round(sum(values) / len(values) / scale, digits),
        "peak": round(max(values) / scale, digits),
        "samples": len(values),
    }


def _clock_drops(
    series: list[tuple[int, float | None, int | None]],
    what: str,
    high_load_pct: float,
    drop_ratio: float,
) -> tuple[list[dict], bool]:
    """Samples where load >= high_load_pct but the clock < drop_ratio x earlier max."""
    events, seen, best = [], False, None
    for index, load, freq in series:
        if load is None or freq is None:
            continue
        seen = True
        if best is not None and load >= high_load_pct and freq < drop_ratio * best:
            event = dict(kind="clock_drop", what=what, sample=index, load_pct=load)
            events.append({**event, "freq_mhz": freq, "max_seen_mhz": best})
        best = freq if best is None else max(best, freq)
    return events, seen


def _span_s(samples: list[dict]) -> float | None:
    first, last = samples[0], samples[-1]
    if first.get("received_s") is not None and last.get("received_s") is not None:
        return round(last["received_s"] - first["received_s"], 3)
    if first.get("timestamp") and last.get("timestamp"):
        delta = datetime.fromisoformat(last["timestamp"]) - datetime.fromisoformat(
            first["timestamp"]
        )
        return delta.total_seconds()
    return None


def _power(samples: list[dict]) -> dict:
    rail_values: dict[str, list[int]] = collections.defaultdict(list)
    for sample in samples:
        for name, rail in sample["rails"].items():
            rail_values[name].append(rail["cur_mw"])
    out = {"rails": {name: _stats(v, 1000.0) for name, v in rail_values.items()}, "total": None}
    input_rail = next((name for name in INPUT_RAILS if name in rail_values), None)
    if input_rail:
        out["total"] = {"rail": input_rail, "basis": "input_rail", **out["rails"][input_rail]}
    elif rail_values:
        sums = [sum(r["cur_mw"] for r in s["rails"].values()) for s in samples if s["rails"]]
        out["total"] = dict(rail=None, basis="sum_of_rails", rails_summed=sorted(rail_values))
        out["total"].update(_stats(sums, 1000.0), note="approximate: no module-input rail")
    return out


def _loads_and_temps(samples: list[dict], gpu: list) -> dict:
    freqs = [g[2] for g in gpu if g[2] is not None]
    cpu_means = []
    for s in samples:
        loads = [c["load"] for c in s["cpu"] if c["load"] is not None]
        if loads:
            cpu_means.append(sum(loads) / len(loads))
    temps: dict[str, list[float]] = collections.defaultdict(list)
    for s in samples:
        for name, value in s["temps_c"].items():
            temps[name].append(value)
    used = [s["ram"]["used_mb"] for s in samples if s["ram"]]
    return {
        "gpu_load_pct": _stats([g[1] for g in gpu if g[1] is not None], digits=1),
        "gpu_freq_mhz": {"min": min(freqs), "max": max(freqs)} if freqs else None,
        "cpu_load_pct": _stats(cpu_means, digits=1),
        "temps_c": {
            n: {"avg": round(sum(v) / len(v), 2), "max": max(v), "samples": len(v)}
            for n, v in temps.items()
        },
        "ram_used_mb_peak": max(used) if used else None,
    }


def _throttling(samples, gpu, high_load_pct, drop_ratio, temp_limits_c) -> dict:
    events, checked = _clock_drops(gpu, "GPU", high_load_pct, drop_ratio)
    cores = max((len(s["cpu"]) for s in samples), default=0)
    for core in range(cores):
        cpu = [(i, s["cpu"][core]) for i, s in enumerate(samples) if core < len(s["cpu"])]
        series = [(i, c["load"], c["freq_mhz"]) for i, c in cpu]
        core_events, core_seen = _clock_drops(series, f"CPU{core}", high_load_pct, drop_ratio)
        events += core_events
        checked = checked or core_seen
    limits = {k.lower(): v for k, v in (temp_limits_c or {}).items()}
    for i, s in enumerate(samples):
        for name, value in s["temps_c"].items():
            limit = limits.get(name.lower())
            if limit is not None:
                checked = True
                if value >= limit:
                    event = dict(kind="over_temp", what=name, sample=i, temp_c=value)
                    events.append({**event, "limit_c": limit})
    detected = bool(events) if checked else None
    return {"detected": detected, "definition": THROTTLE_DEFINITION, "events": events}


def summarize(
    samples: list[dict],
    *,
    high_load_pct: float = 80.0,
    drop_ratio: float = 0.9,
    temp_limits_c: dict[str, float] | None = None,
) -> dict:
    """Summarize parsed samples: power per rail (W), GPU load, temperatures, throttling.

    ``rails`` maps each rail to ``avg``/``peak`` watts over the instantaneous readings.
    ``total`` is the module input rail (:data:`INPUT_RAILS`) when the board has one,
    else the per-sample sum of all rails with ``basis`` "sum_of_rails". ``temp_limits_c``
    maps sensor names (case-insensitive) to a throttle temperature; see
    :data:`THROTTLE_DEFINITION` for what ``throttling.detected`` means (None when no
    sample carried the data to decide).
    """
    gpu = [(i, s["gpu"]["load"], s["gpu"]["freq_mhz"]) for i, s in enumerate(samples) if s["gpu"]]
    out: dict = {"sample_count": len(samples), "span_s": _span_s(samples) if samples else None}
    out.update(_power(samples))
    out.update(_loads_and_temps(samples, gpu))
    out["throttling"] = _throttling(samples, gpu, high_load_pct, drop_ratio, temp_limits_c)
    return out
