"""Bench reports a person can read: terminal tables, report.json, report.md, PNGs, and
``--compare`` of two reports side by side.

``report.json`` carries ``"schema": "edgeft.bench/1"``; a reader refuses other schemas
and newer versions with one line. Every file of a report is written into a temporary
sibling folder that replaces ``--out`` only when complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeft.atomic import replace_dir
from edgeft.console import console, table
from edgeft.errors import UserError

SCHEMA = "edgeft.bench"
SCHEMA_VERSION = 1
SCHEMA_ID = f"{SCHEMA}/{SCHEMA_VERSION}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _sci(v) -> str:
    return "-" if v is None else f"{v:.2e}"


def _verdict(row: dict) -> str:
    return "ok" if row["passed"] else "BREACH: " + "; ".join(row["breaches"])


def _export(row: dict, terse: bool = False) -> str:
    ex = row.get("export_parity")
    if not ex:
        return "-"
    if not ex.get("comparable"):
        return "n/a" if terse else "n/a (other images)"
    if ex["agrees"]:
        return "agrees"
    return "DIFFERS" if terse else f"DIFFERS (export acc {_pct(ex['accuracy'])})"


def backend_rows(report: dict) -> list[list]:
    return [
        [
            b["name"],
            b["status"],
            b.get("precision") or "-",
            b.get("runs_on") or "-",
            b.get("reason") or "",
        ]
        for b in report["backends"]
    ]


def ladder_rows(report: dict, terse: bool = False) -> list[list]:
    rows = []
    for r in report["ladder"]["rows"]:
        f = r["figures"]
        if terse:
            row = [
                r["backend"],
                r["precision"],
                f"{100 * f['accuracy']:.1f}%",
                f"{f['accuracy_drop_pp']:+.2f}",
                f"{100 * f['agreement']:.1f}%",
                _sci(f["max_abs_diff"]),
                len(f["flipped"]),
                _export(r, terse=True),
                "ok" if r["passed"] else "BREACH",
            ]
        else:
            row = [
                r["backend"],
                r["precision"],
                _pct(f["accuracy"]),
                f"{f['accuracy_drop_pp']:+.2f}",
                _pct(f["agreement"]),
                _pct(f["top5_overlap"]),
                _sci(f["max_abs_diff"]),
                _sci(f["mean_abs_diff"]),
                len(f["flipped"]),
                _export(r),
                _verdict(r),
            ]
        rows.append(row)
    return rows


LADDER_COLUMNS = [
    "backend",
    "precision",
    "accuracy",
    "drop pp",
    "agreement",
    "top-5 overlap",
    "max |diff|",
    "mean |diff|",
    "flipped",
    "export-time parity",
    "verdict",
]
LADDER_TERSE = [
    "backend",
    "prec",
    "acc",
    "drop pp",
    "agree",
    "max|diff|",
    "flips",
    "export",
    "verdict",
]


def latency_rows(report: dict, terse: bool = False) -> list[list]:
    rows = []
    for e in report["latency"]:
        m, x = e["model"], e.get("e2e") or {}
        power = (e.get("power") or {}).get("total") or {}
        watts = f"{power['avg']:.2f}" if power.get("avg") is not None else "-"
        if terse:
            rows.append(
                [
                    e["backend"],
                    e["batch_size"],
                    _ms(m["p50_ms"]),
                    _ms(m["p90_ms"]),
                    _ms(m["p99_ms"]),
                    _ms(m["std_ms"]),
                    f"{m['throughput_ips']:.0f}",
                    _ms(x.get("p50_ms")),
                    f"{x['throughput_ips']:.0f}" if x else "-",
                ]
                + ([watts] if power else [])
            )
            continue
        rows.append(
            [
                e["backend"],
                e["batch_size"],
                _ms(m["p50_ms"]),
                _ms(m["p90_ms"]),
                _ms(m["p99_ms"]),
                f"{_ms(m['mean_ms'])} ± {_ms(m['std_ms'])}",
                f"{m['throughput_ips']:.1f}",
                _ms(x.get("p50_ms")),
                f"{x['throughput_ips']:.1f}" if x else "-",
                m["runs"],
                watts,
            ]
        )
    return rows


LATENCY_COLUMNS = [
    "backend",
    "batch",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ± std ms",
    "img/s",
    "e2e p50 ms",
    "e2e img/s",
    "runs",
    "power W",
]
LATENCY_TERSE = ["backend", "bs", "p50", "p90", "p99", "std", "img/s", "e2e p50", "e2e img/s"]


def data_line(report: dict) -> str:
    d = report["data"]
    parts = [f"{d['n_images']} labelled images from {d['source']}"]
    if d["skipped_unreadable"]:
        parts.append(f"{d['skipped_unreadable']} unreadable skipped (e.g. {d['skipped'][0][0]})")
    if d["unknown_labels"]:
        parts.append(
            "excluded, labels the bundle does not know: "
            + ", ".join(f"{k} ({v})" for k, v in d["unknown_labels"].items())
        )
    if d.get("ignored_files"):
        parts.append(f"{d['ignored_files']} non-image files ignored")
    return "; ".join(parts)


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
    if report.get("out"):
        c.print(
            f"reports in {report['out']}: report.json, report.md, "
            + ", ".join(report["files"]["plots"])
        )


def write_reports(report: dict, out: Path, extra_files=None) -> Path:
    """Write report.json, report.md and the PNGs into ``out`` (replacing it) atomically.

    Args:
        extra_files: callable ``(tmp_dir) -> None`` writing PNGs first (so the Markdown can
            link them); it fills ``report["files"]``.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder: choose another --out")

    def fill(tmp: Path) -> None:
        if extra_files:
            extra_files(tmp)
        from benchmarks.report_md import render_markdown

        (tmp / "report.md").write_text(render_markdown(report))
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")

    return replace_dir(out, fill)


def load_report(path: Path) -> dict:
    """Read a report.json (or a report folder).

    Raises:
        UserError: missing, unreadable, not a bench report, or a newer schema.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist: pass a report.json written by `edgeft bench`"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    name, _, version = str(schema).partition("/")
    if name != SCHEMA or not version.isdigit():
        raise UserError(
            f"{path} is not an edgeft bench report (schema {schema!r}, expected {SCHEMA_ID})"
        )
    if int(version) > SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema {schema}, this edgeft reads up to {SCHEMA_ID}: upgrade edgeft"
        )
    return data
