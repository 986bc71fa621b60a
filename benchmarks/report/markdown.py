"""report.md: the bench report for people who read it in a browser or a pull request."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report.tables import (
    LADDER_COLUMNS,
    LATENCY_COLUMNS,
    _pct,
    _sci,
    backend_rows,
    data_line,
    ladder_rows,
    latency_rows,
)


def _md_table(columns: list[str], rows: list[list]) -> str:
    esc = [[str(v).replace("|", "\\|").replace("\n", " ") for v in r] for r in [columns, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def _header(report: dict) -> list[str]:
    env = report["environment"]
    gpu = (env.get("gpu") or {}).get("gpu") or {}
    cpu = env.get("cpu") or {}
    isa = ", ".join(cpu.get("isa") or []) or "-"
    out = [
        f"# edgeft bench: {report['bundle']['name']} on {env['device']}",
        "",
        f"- bundle: `{report['bundle']['path']}` ({report['bundle']['arch']}, "
        f"{report['bundle']['num_classes']} classes, input {report['bundle']['input_size']})",
        f"- data: {data_line(report)}",
        f"- CPU: {cpu.get('model')} (int8/bf16 instructions: {isa}; {cpu.get('logical_cores')} "
        f"logical cores, load {cpu.get('loadavg')}); threads: "
        f"{env['threads']['requested'] or 'framework defaults'}",
        f"- GPU: {gpu.get('name')} (sm {gpu.get('compute_capability')}, driver {env['gpu'].get('driver')})"
        if gpu
        else f"- GPU: none ({(env.get('gpu') or {}).get('reason')})",
        f"- onnxruntime {(env.get('onnxruntime') or {}).get('version')}, "
        f"torch {(env.get('torch') or {}).get('version')}, TensorRT {(env.get('tensorrt') or {}).get('tensorrt')}",
        f"- created {report['created']}, edgeft {report['edgeft']}, schema `{report['schema']}`",
    ]
    if env.get("jetson"):
        j = env["jetson"]
        out.append(
            f"- Jetson: {j.get('model')}, L4T {(j.get('l4t') or {}).get('version')}, JetPack "
            f"{(j.get('jetpack') or {}).get('version')}, power mode {(j.get('power_mode') or {}).get('name')}, "
            f"clocks locked: {(j.get('clocks') or {}).get('locked')}"
        )
    if report.get("remote"):
        out.append(f"- run remotely on `{report['remote']['host']}` over SSH")
    return out


def _verdict(report: dict) -> list[str]:
    verdict = report["verdict"]
    out = [
        "",
        "## Verdict",
        "",
        "**PASSED**: every backend within tolerance."
        if verdict["passed"]
        else "**FAILED**: "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in verdict["breaches"].items()),
    ]
    if verdict.get("failed"):
        out.append(
            "Backends that failed to run or were refused: "
            + "; ".join(f"{k}: {v}" for k, v in verdict["failed"].items())
        )
    header = ["backend", "status", "precision", "runs on", "reason"]
    return out + ["", "## Backends", "", _md_table(header, backend_rows(report))]


TOLERANCE_COLUMNS = [
    "backend",
    "min agreement",
    "max drop pp",
    "max |diff|/(1+|ref|)",
    "tolerance from",
    "preprocessing from",
    "differs from bundle in",
]


def _ladder(report: dict) -> list[str]:
    ref = report["ladder"]["reference"]
    tol_rows = [
        [
            r["backend"],
            _pct(r["tolerance"]["min_agreement"]),
            f"{r['tolerance']['max_accuracy_drop']:.2f}",
            _sci(r["tolerance"].get("max_scaled_diff")),
            r.get("tolerance_from", "default"),
            r["preprocessing"]["source"],
            ", ".join(r["preprocessing"]["differs_from_bundle"]) or "-",
        ]
        for r in report["ladder"]["rows"]
    ]
    return [
        "",
        "## Parity ladder",
        "",
        f"Reference: PyTorch FP32 on {ref['device']}, accuracy {_pct(ref['accuracy'])} on {ref['n']} images.",
        "",
        _md_table(LADDER_COLUMNS, ladder_rows(report)),
        "",
        _md_table(TOLERANCE_COLUMNS, tol_rows),
    ]


def _changes(report: dict) -> list[str]:
    out = []
    for r in report["ladder"]["rows"]:
        changes = {k: v for k, v in r["figures"]["recall_change"].items() if abs(v) > 1e-12}
        if changes:
            out += [
                "",
                f"Recall change, {r['backend']}: "
                + ", ".join(f"{k} {100 * v:+.1f} pp" for k, v in changes.items()),
            ]
        flipped = r["figures"]["flipped"]
        if flipped:
            out += ["", f"Flipped by {r['backend']} ({len(flipped)}):", ""]
            out += [
                f"- `{f['path']}`: true {f['label']}, reference {f['reference']} -> {f['prediction']}"
                for f in flipped[:20]
            ]
            if len(flipped) > 20:
                out.append(f"- ... {len(flipped) - 20} more in report.json")
            sheet = report["files"]["contact_sheets"].get(r["backend"])
            if sheet:
                out += ["", f"![flipped by {r['backend']}]({sheet})"]
    return out


def _latency(report: dict) -> list[str]:
    out = []
    if report["latency"]:
        o = report["options"]
        how = f"{o['runs']} runs" if o.get("runs") else f"{o['seconds']} s"
        out += [
            "",
            "## Latency",
            "",
            f"Warm-up {o['warmup']} calls, then {how} per backend, batch size and mode. "
            "Timings on a shared or busy machine are noisy: compare medians.",
            "",
            _md_table(LATENCY_COLUMNS, latency_rows(report)),
        ]
    power = power_rows(report)
    if power:
        definition = next(
            e["power"]["throttling"]["definition"] for e in report["latency"] if e.get("power")
        )
        out += [
            "",
            "## Power and thermals (tegrastats, during the model-only timed runs)",
            "",
            _md_table(POWER_COLUMNS, power),
            "",
            f"Throttling: {definition}",
        ]
    return out


def _recommendation(report: dict) -> list[str]:
    recs = report.get("recommendation") or []
    if not recs:
        return []
    out = ["", "## Recommendation", ""]
    for r in recs:
        out.append(f"- batch {r['batch_size']}: {r['sentence']}")
        for name, why in (r.get("others") or {}).items():
            out.append(f"  - {name}: {why}")
    return out


def render_markdown(report: dict) -> str:
    """report.md: the recommendation, the same tables, the environment, recall changes and
    flipped images."""
    out = _header(report) + _recommendation(report) + _verdict(report) + _ladder(report)
    out += _changes(report) + _latency(report)
    out += [""] + [f"![{Path(p).stem}]({p})" for p in report["files"]["plots"]]
    return "\n".join(out) + "\n"


POWER_COLUMNS = [
    "backend",
    "batch",
    "samples",
    "avg W",
    "peak W",
    "measured as",
    "rails avg W",
    "GPU load avg %",
    "hottest sensor",
    "throttled",
]


def power_rows(report: dict) -> list[list]:
    """One row per timed phase that tegrastats watched (Jetson only)."""
    rows = []
    for e in report["latency"]:
        p = e.get("power")
        if not p:
            continue
        total = p.get("total") or {}
        rails = ", ".join(f"{k} {v['avg']:.2f}" for k, v in (p.get("rails") or {}).items() if v)
        hot = max((p.get("temps_c") or {}).items(), key=lambda kv: kv[1]["max"], default=None)
        gpu = (p.get("gpu_load_pct") or {}).get("avg")
        detected = p["throttling"]["detected"]
        rows.append(
            [
                e["backend"],
                e["batch_size"],
                p["sample_count"],
                _num(total.get("avg")),
                _num(total.get("peak")),
                total.get("rail") or total.get("basis") or "-",
                rails or "-",
                _num(gpu, 1),
                f"{hot[0]} {hot[1]['max']:.1f} C" if hot else "-",
                "unknown" if detected is None else "YES" if detected else "no",
            ]
        )
    return rows


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
