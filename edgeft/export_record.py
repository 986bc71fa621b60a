"""Artifact records for ``bundle.json``, their parity blocks, and what export prints."""

from __future__ import annotations

from pathlib import Path

from edgeft.errors import UserError
from edgeft.provenance import now_iso, package_version

MAX_FLIPPED = 20  # flipped images listed in a record (the count is always complete)


def labelled_samples(bundle, data=None) -> tuple[list, str]:
    """The validation images parity runs on: ``--data DIR`` (class folders named like the
    bundle's labels) or the bundle's recorded validation split. Returns ``(samples, source)``.

    Raises:
        UserError: the folder is missing or holds an unknown class; the recorded images are gone.
    """
    from edgeft.parity import bundle_valid_samples

    if data is None:
        return bundle_valid_samples(bundle), "bundle validation split (split.json)"
    from edgeft.dataset import _scan_class_folders

    root = Path(data).expanduser().resolve()
    if not root.is_dir():
        raise UserError(
            f"--data {root} is not a folder: pass the labelled validation folder (one folder per class)"
        )
    samples = _scan_class_folders(root, "--data folder")
    unknown = sorted({label for _, label in samples} - set(bundle.labels))
    if unknown:
        raise UserError(
            f"--data class folder {unknown[0]!r} is not one of the bundle's labels "
            f"({', '.join(bundle.labels)})"
        )
    return samples, str(root)


def tools(*extra: str) -> dict:
    """Versions of the tools that shaped an artifact."""
    import edgeft

    names = ("torch", "onnx", "onnxruntime", "onnxslim", "numpy", *extra)
    return {"edgeft": edgeft.__version__, **{n: v for n in names if (v := package_version(n))}}


def parity_block(ctx, figures: dict | None, precision: str, scope: str) -> dict:
    """The ``parity`` entry of a record: figures, tolerance, breaches, where measured."""
    if figures is None:
        return {"checked": False, "scope": scope if ctx.opts.check else "not checked (--no-check)"}
    tol = ctx.tolerance(precision)
    found = ctx.breaches(figures, precision)
    flipped = figures.get("flipped", [])
    valid = ctx.valid()
    return {
        "checked": True,
        "passed": not found,
        "breaches": found,
        "scope": scope,
        "images": getattr(valid, "source", None),
        "skipped_images": len(valid.skipped),
        "tolerance": tol.to_dict(),
        **{k: v for k, v in figures.items() if k != "flipped"},
        "flipped_count": len(flipped),
        "flipped": flipped[:MAX_FLIPPED],
        "measured": now_iso(),
    }


def artifact_record(
    ctx,
    path: Path,
    *,
    fmt: str,
    precision: str,
    normalize_in_graph: bool,
    output: str,
    build: dict,
    target: dict,
    parity: dict,
    source: dict | None = None,
    tool_versions: dict | None = None,
) -> dict:
    """One ``artifacts`` entry (the convention in ``edgeft/bundle.py``) for a staged file."""
    return {
        "path": ctx.final_name(path),
        "format": fmt,
        "precision": precision,
        "normalize_in_graph": normalize_in_graph,
        "output": output,
        "sha256": ctx.sha256(path),
        "size_bytes": Path(path).stat().st_size,
        "source": source,
        "build": build,
        "tools": tool_versions or tools(),
        "target": target,
        "parity": parity,
        "created": now_iso(),
    }


def summary_table(records: dict):
    """A table of what was exported and how it compares with PyTorch."""
    from edgeft.console import table

    rows = []
    for name, rec in records.items():
        p = rec.get("parity") or {}
        checked = p.get("checked")
        rows.append(
            [
                name,
                rec["path"],
                f"{rec['size_bytes'] / 1e6:.2f}",
                rec["precision"],
                f"{100 * p['agreement']:.2f}%" if checked else "-",
                f"{p['accuracy_drop_pp']:+.2f}" if checked else "-",
                f"{p['max_abs_diff']:.1e}" if checked else "-",
                "ok" if checked and p.get("passed") else "FAIL" if checked else "not checked",
            ]
        )
    return table(
        "Exported",
        [
            "artifact",
            "file",
            "MB",
            "precision",
            "top-1 agreement",
            "acc. drop (pp)",
            "max |diff|",
            "parity",
        ],
        rows,
        justify_numbers=False,
    )


def failure_message(name: str, rec: dict) -> str:
    """One line: what broke the tolerance, the figures, and (INT8) the per-layer results."""
    p = rec["parity"]
    msg = (
        f"{name} does not match the PyTorch model on {p['n']} validation images: {'; '.join(p['breaches'])} "
        f"(accuracy {100 * p['reference_accuracy']:.2f}% -> {100 * p['accuracy']:.2f}%, "
        f"top-1 agreement {100 * p['agreement']:.2f}%, max |diff| {p['max_abs_diff']:.2e})"
    )
    fb = ((rec.get("build") or {}).get("int8") or {}).get("fallback")
    if fb:
        steps = ", ".join(f"{s['float_nodes']}:{s['drop_pp']:.2f}" for s in fb["steps"])
        top = ", ".join(f"{r['node']} {r['gain']:.4f}" for r in fb["ranking"][:5])
        msg += (
            f"; drop (pp) with N layers kept in float, N:drop = {steps} (budget {fb['budget']}); "
            f"most sensitive layers (KL gain) {top}; raise --max-accuracy-drop or --max-float-layers, "
            "or try another --calib-method / more --calib-count"
        )
    return msg + f"; {name} was not kept"
