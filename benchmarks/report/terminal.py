"""The terminal view of a bench report."""

from __future__ import annotations

from benchmarks.report.tables import (
    LADDER_TERSE,
    LATENCY_TERSE,
    _pct,
    backend_rows,
    data_line,
    ladder_rows,
    latency_rows,
)
from edgeft.console import console, table


def _compact(t):
    """Tables that fit an 80-column terminal: no outer edge, one space of padding."""
    from rich import box

    t.box, t.padding, t.show_edge = box.SIMPLE_HEAD, (0, 1), False
    t.collapse_padding = True
    t.pad_edge = False
    return t


def print_report(report: dict) -> None:
    """The terminal view: backends, the ladder, latency (ms), breaches, and where the files are."""
    c = console()
    env = report["environment"]
    gpu = (env.get("gpu") or {}).get("gpu") or {}
    c.print(
        f"[bold]edgeft bench[/bold] {report['bundle']['path']} on {env['device']}: "
        f"{(env.get('cpu') or {}).get('model')}" + (f", {gpu.get('name')}" if gpu else "")
    )
    c.print(data_line(report))
    c.print(
        _compact(
            table(
                "Backends",
                ["backend", "status", "precision", "runs on", "reason"],
                backend_rows(report),
            )
        )
    )
    ref = report["ladder"]["reference"]
    c.print(
        _compact(
            table(
                f"Parity ladder vs PyTorch FP32 (reference accuracy {_pct(ref['accuracy'])}, "
                f"n={ref['n']})",
                LADDER_TERSE,
                ladder_rows(report, terse=True),
            )
        )
    )
    for r in report["ladder"]["rows"]:
        if r["breaches"]:
            c.print(f"[red]{r['backend']}[/red]: " + "; ".join(r["breaches"]))
    if report["latency"]:
        cols = LATENCY_TERSE + (["W"] if any(e.get("power") for e in report["latency"]) else [])
        c.print(
            _compact(
                table(
                    "Latency in ms (model only; e2e = decode + preprocess + model)",
                    cols,
                    latency_rows(report, terse=True),
                )
            )
        )
    for r in report.get("recommendation") or []:
        c.print(f"[bold]recommended at batch {r['batch_size']}[/bold]: {r['sentence']}")
    if report.get("out"):
        c.print(
            f"reports in {report['out']}: report.json, report.md, "
            + ", ".join(report["files"]["plots"])
        )
