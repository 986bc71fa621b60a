"""``edgeft bench --compare A B``: two bench reports side by side (two devices, before/after)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.report.files import load_report
from benchmarks.report.markdown import _md_table
from benchmarks.report.tables import _ms, _pct, _sci
from benchmarks.report.terminal import _compact
from edgeft.console import console, table


def _ratio(a, b) -> str:
    return f"{b / a:.2f}x" if a and b else "-"


def _env_line(r: dict) -> list:
    env = r["environment"]
    gpu = ((env.get("gpu") or {}).get("gpu") or {}).get("name")
    return [
        env["device"],
        env.get("host"),
        (env.get("cpu") or {}).get("model"),
        gpu or "-",
        (env.get("onnxruntime") or {}).get("version"),
        r["created"],
    ]


def _ladder_rows(a: dict, b: dict) -> list[list]:
    la = {r["backend"]: r for r in a["ladder"]["rows"]}
    lb = {r["backend"]: r for r in b["ladder"]["rows"]}
    rows = []
    for name in list(la) + [n for n in lb if n not in la]:
        fa, fb = (la.get(name) or {}).get("figures", {}), (lb.get(name) or {}).get("figures", {})
        rows.append(
            [name]
            + [
                f(x.get(k))
                for k, f in (("accuracy", _pct), ("agreement", _pct), ("max_abs_diff", _sci))
                for x in (fa, fb)
            ]
        )
    return rows


def _latency_rows(a: dict, b: dict) -> list[list]:
    ka = {(e["backend"], e["batch_size"]): e for e in a["latency"]}
    kb = {(e["backend"], e["batch_size"]): e for e in b["latency"]}
    rows = []
    for key in list(ka) + [k for k in kb if k not in ka]:
        ea, eb = ka.get(key), kb.get(key)
        pa = ea["model"]["p50_ms"] if ea else None
        pb = eb["model"]["p50_ms"] if eb else None
        xa = (ea.get("e2e") or {}).get("p50_ms") if ea else None
        xb = (eb.get("e2e") or {}).get("p50_ms") if eb else None
        rows.append(
            [key[0], key[1], _ms(pa), _ms(pb), _ratio(pa, pb), _ms(xa), _ms(xb), _ratio(xa, xb)]
        )
    return rows


def compare_reports(a: dict, b: dict, names=("A", "B")) -> dict:
    """Two reports side by side: environments, ladders and latencies (B/A ratios)."""
    na, nb = names
    keys = ["device", "host", "CPU", "GPU", "onnxruntime", "created"]
    env_rows = [[k, va, vb] for k, va, vb in zip(keys, _env_line(a), _env_line(b), strict=True)]
    ladder_cols = ["backend"] + [
        f"{what} {n}" for what in ("acc", "agree", "max|diff|") for n in (na, nb)
    ]
    latency_cols = ["backend", "batch", f"p50 ms {na}", f"p50 ms {nb}", f"{nb}/{na}"]
    latency_cols += [f"e2e p50 {na}", f"e2e p50 {nb}", f"e2e {nb}/{na}"]
    return {
        "environment": (["", na, nb], env_rows),
        "ladder": (ladder_cols, _ladder_rows(a, b)),
        "latency": (latency_cols, _latency_rows(a, b)),
    }


def print_compare(tables: dict, paths=None) -> None:
    """The tables of :func:`compare_reports` in the terminal (A and B named first)."""
    c = console()
    if paths:
        c.print(f"A = {paths[0]}\nB = {paths[1]}")
    for title, (cols, rows) in tables.items():
        c.print(_compact(table(title.capitalize(), cols, rows)))


def compare_markdown(tables: dict, paths) -> str:
    out = [f"# edgeft bench: {paths[0]} (A) vs {paths[1]} (B)"]
    for title, (cols, rows) in tables.items():
        out += ["", f"## {title.capitalize()}", "", _md_table([c or " " for c in cols], rows)]
    return "\n".join(out) + "\n"


def run_compare(paths, out: Path | None = None) -> dict:
    """``edgeft bench --compare A B``: print two reports side by side; with ``out``, also
    write ``compare.md`` there. Returns the tables."""
    a, b = (load_report(p) for p in paths)
    tables = compare_reports(a, b)
    print_compare(tables, [str(p) for p in paths])
    if out is not None:
        out = Path(out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".compare.md.", dir=out)
        with os.fdopen(fd, "w") as f:
            f.write(compare_markdown(tables, [str(p) for p in paths]))
        os.replace(tmp, out / "compare.md")
    return tables
