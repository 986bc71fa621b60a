"""The rows and columns of a bench report, shared by the terminal view and report.md."""

from __future__ import annotations


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
                _sci(f.get("max_scaled_diff")),
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
    "max |diff|/(1+|ref|)",
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
