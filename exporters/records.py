"""Artifact records for ``bundle.json``, their parity blocks, and what export prints."""

from __future__ import annotations

from pathlib import Path

import edgeft
from edgeft.atomic import sha256_file
from edgeft.console import table
from edgeft.manifest import ArtifactRecord
from edgeft.parity import breaches
from edgeft.provenance import now_iso, package_version

MAX_FLIPPED = 20  # flipped images listed in a record (the count is always complete)


def tools(*extra: str) -> dict:
    """Versions of the tools that shaped an artifact."""

    names = ("torch", "onnx", "onnxruntime", "onnxslim", "numpy", *extra)
    return {"edgeft": edgeft.__version__, **{n: v for n in names if (v := package_version(n))}}


def parity_block(figures: dict | None, tol, scope: str, valid=None) -> dict:
    """The ``parity`` entry of a record: figures, tolerance, breaches, where measured."""
    if figures is None:
        return {"checked": False, "scope": scope}
    found = breaches(figures, tol)
    flipped = figures.get("flipped", [])
    return {
        "checked": True,
        "passed": not found,
        "breaches": found,
        "scope": scope,
        "images": getattr(valid, "source", None),
        "unknown_labels": getattr(valid, "unknown", {}),
        "skipped_images": len(valid.skipped) if valid is not None else 0,
        "tolerance": tol.to_dict(),
        **{k: v for k, v in figures.items() if k != "flipped"},
        "flipped_count": len(flipped),
        "flipped": flipped[:MAX_FLIPPED],
        "measured": now_iso(),
    }


def artifact_record(
    fmt, staged: Path, stub: dict, result, parity: dict, source: dict | None
) -> ArtifactRecord:
    """One ``artifacts`` entry for a staged file (validated like the rest of the manifest);
    its size counts the files it needs besides itself (an OpenVINO IR's ``.bin``)."""
    extra = [result.side_files[n] for n in result.extra_files if n in result.side_files]
    return ArtifactRecord(
        path=fmt.file,
        format=fmt.file_format,
        precision=fmt.precision,
        normalize_in_graph=stub["normalize_in_graph"],
        output=stub["output"],
        sha256=sha256_file(staged),
        size_bytes=staged.stat().st_size + sum(f.stat().st_size for f in extra),
        source=source,
        build=result.build,
        tools=tools() | result.tools,
        target=result.target,
        parity=parity,
        created=now_iso(),
        extra_files=result.extra_files,
    )


def summary_table(records: dict):
    """A table of what was exported and how it compares with PyTorch."""

    rows = []
    for name, rec in records.items():
        p = rec.parity or {}
        checked = p.get("checked")
        rows.append(
            [
                name,
                rec.path,
                f"{(rec.size_bytes or 0) / 1e6:.2f}",
                rec.precision,
                f"{100 * p['agreement']:.2f}%" if checked else "-",
                f"{p['accuracy_drop_pp']:+.2f}" if checked else "-",
                f"{p['max_abs_diff']:.1e}" if checked else "-",
                "ok" if checked and p.get("passed") else "FAIL" if checked else "not checked",
            ]
        )
    columns = ["artifact", "file", "MB", "precision", "top-1 agreement", "acc. drop (pp)"]
    return table("Exported", [*columns, "max |diff|", "parity"], rows, justify_numbers=False)


def failure_message(name: str, rec: ArtifactRecord) -> str:
    """One line: what broke the tolerance, the figures, and (INT8) the per-layer results."""
    p = rec.parity
    msg = (
        f"{name} does not match the PyTorch model on {p['n']} validation images: {'; '.join(p['breaches'])} "
        f"(accuracy {100 * p['reference_accuracy']:.2f}% -> {100 * p['accuracy']:.2f}%, "
        f"top-1 agreement {100 * p['agreement']:.2f}%, max |diff| {p['max_abs_diff']:.2e})"
    )
    fb = (rec.build.get("int8") or {}).get("fallback")
    if fb:
        steps = ", ".join(f"{s['float_nodes']}:{s['drop_pp']:.2f}" for s in fb["steps"])
        top = ", ".join(f"{r['node']} {r['gain']:.4f}" for r in fb["ranking"][:5])
        msg += (
            f"; drop (pp) with N layers kept in float, N:drop = {steps} (budget {fb['budget']}); "
            f"most sensitive layers (KL gain) {top}; raise --max-accuracy-drop or --max-float-layers, "
            "or try another --calib-method / more --calib-count"
        )
    return msg + f"; {name} was not kept"
