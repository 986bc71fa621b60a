"""report.json, report.md and the PNGs of a bench report, written atomically; reading
a report back (schema-checked); and the verdict that ends a bench."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report.markdown import render_markdown
from edgeft.atomic import replace_dir
from edgeft.errors import ParityError, UserError

SCHEMA = "edgeft.bench"
SCHEMA_VERSION = 1
SCHEMA_ID = f"{SCHEMA}/{SCHEMA_VERSION}"


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


def write_bench_reports(report: dict, out_dir: Path) -> Path:
    """Write report.json/.md, the plots and the flipped-image contact sheets into ``out_dir``."""
    from benchmarks.report import plots

    def pngs(tmp: Path) -> None:
        files = {"plots": [], "contact_sheets": {}}
        for name, fn in (
            ("accuracy_vs_latency.png", plots.accuracy_vs_latency_png),
            ("latency_distribution.png", plots.latency_distribution_png),
        ):
            if fn(report, tmp / name):
                files["plots"].append(name)
        for row in report["ladder"]["rows"]:
            name = f"flipped-{row['backend']}.png"
            if plots.contact_sheet_png(
                row["figures"]["flipped"],
                tmp / name,
                f"{row['backend']}: predictions that differ from PyTorch FP32",
            ):
                files["contact_sheets"][row["backend"]] = name
        report["files"] = files

    return write_reports(report, out_dir, pngs)


def raise_on_verdict(report: dict) -> None:
    """ParityError naming each breach (accuracy drop first), or UserError for failed backends."""
    verdict = report["verdict"]
    where = f" (report: {Path(report['out']) / 'report.md'})"
    if verdict["breaches"]:
        parts = []
        for r in report["ladder"]["rows"]:
            if r["breaches"]:
                f = r["figures"]
                why = (
                    f"{r['backend']}: accuracy {100 * f['accuracy']:.2f}% vs {100 * f['reference_accuracy']:.2f}% "
                    f"(drop {f['accuracy_drop_pp']:.2f} pp), breaches " + ", ".join(r["breaches"])
                )
                if r["preprocessing"]["differs_from_bundle"]:
                    why += (
                        f"; its artifact's preprocessing differs from the bundle's in "
                        f"{', '.join(r['preprocessing']['differs_from_bundle'])}"
                    )
                parts.append(why)
        failed = "".join(f"; {k} failed to run: {v}" for k, v in verdict["failed"].items())
        raise ParityError("parity ladder failed: " + "; ".join(parts) + failed + where, verdict)
    if verdict["failed"]:
        raise UserError(
            "; ".join(f"backend {k} failed to run: {v}" for k, v in verdict["failed"].items())
            + where
        )
