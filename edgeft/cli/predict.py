"""``edgeft predict``."""

from __future__ import annotations

import json
import sys

import typer

from edgeft.cli.build import add_command
from edgeft.predict import PredictOptions


def _run(opts: PredictOptions) -> None:
    from edgeft.console import console, table
    from edgeft.predict import predict

    preds, skipped = predict(
        opts.bundle,
        opts.images,
        top_k=opts.top_k,
        backend=opts.backend,
        device=opts.device,
        trust_modified=opts.trust_modified,
    )
    if opts.as_json:
        for p in preds:
            top = [{"label": lb, "prob": pr} for lb, pr in p.top]
            sys.stdout.write(json.dumps({"path": p.path, "top": top}, allow_nan=False) + "\n")
    else:
        rows = [[p.path, *[f"{lb} {pr:.3f}" for lb, pr in p.top]] for p in preds]
        columns = ["image", *[f"top-{i + 1}" for i in range(len(preds[0].top))]]
        console().print(table("Predictions", columns, rows))
    if skipped:
        typer.echo(
            f"skipped {len(skipped)} unreadable images (e.g. {skipped[0][0]}: {skipped[0][1]})",
            err=True,
        )


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "predict",
        PredictOptions,
        _run,
        "Top-k labels with probabilities, using the bundle's own preprocessing (no fastai).",
    )
