"""The ``edgeft`` command line: parses options and calls the library, nothing else.

User errors (:class:`edgeft.errors.UserError`) print one line and exit non-zero; parity
failures exit 3; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import typer

from edgeft.errors import EXIT_INTERRUPTED, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Fine-tune an ImageNet CNN on a small dataset and ship it to edge hardware you can trust.",
    pretty_exceptions_enable=False,
)


@app.command()
def finetune(
    data: Path = typer.Option(
        ...,
        "--data",
        help="Folder of class folders, train/+valid/ folders, or a CSV of path,label.",
    ),
    arch: str = typer.Option(
        ...,
        "--arch",
        help="Backbone: vgg16, vgg16_bn, googlenet, resnet18/34/50, mobilenet_v2, mobilenet_v3_small/large, efficientnet_b0, efficientnet_lite0, alexnet.",
    ),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    strategy: str = typer.Option(
        "discriminative", help="head | discriminative | full | freeze:K | scratch."
    ),
    epochs: int = typer.Option(4, help="Epochs (after the frozen epochs for discriminative)."),
    freeze_epochs: int = typer.Option(
        1, help="Frozen-backbone epochs first (discriminative only)."
    ),
    lr: str = typer.Option(
        "2e-3", help="Learning rate, or 'auto' (fastai lr_find, valley; recorded)."
    ),
    lr_mult: float = typer.Option(
        100.0, help="Discriminative: the head's LR over the first group's."
    ),
    wd: float | None = typer.Option(
        None, help="Weight decay (L2, decoupled); default fastai's 0.01."
    ),
    batch_size: int = typer.Option(64, help="Batch size."),
    size: str = typer.Option("224", help="Input size: N or HxW."),
    resize: str = typer.Option("crop", help="crop (centred, fastai's default) or squish."),
    seed: int = typer.Option(0, help="Seed of the split, the head's init and the batches."),
    valid_pct: float = typer.Option(
        0.2, help="Share of each class held out (folder-per-class layout)."
    ),
    valid_dir: Path | None = typer.Option(
        None, help="A separate folder of class folders to validate on."
    ),
    head: str = typer.Option("fastai", help="fastai (default head), linear, or fc:N."),
    pretrained: bool = typer.Option(
        True, "--pretrained/--no-pretrained", help="Start from ImageNet weights."
    ),
    weights: str | None = typer.Option(
        None, help="Checkpoint file, or a torchvision variant (IMAGENET1K_V1)."
    ),
    aug: str = typer.Option(
        "default", help="default | dihedral (90-degree rotations + flips, no colour change) | none."
    ),
    balance: str = typer.Option("none", help="none | weights (class-weighted loss) | oversample."),
    positive: str | None = typer.Option(
        None, help="Positive class for sensitivity/specificity/AUC (2 classes)."
    ),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    force: bool = typer.Option(False, help="Replace --out if it exists."),
    quiet: bool = typer.Option(False, help="No progress bars or tables (for scripts)."),
):
    """Fine-tune a pretrained backbone with fastai and write a deployable bundle."""
    from edgeft.console import set_quiet
    from edgeft.finetune import FinetuneOptions, parse_lr, parse_size
    from edgeft.finetune import finetune as run

    set_quiet(quiet)
    run(
        FinetuneOptions(
            data=data,
            arch=arch,
            out=out,
            strategy=strategy,
            epochs=epochs,
            freeze_epochs=freeze_epochs,
            lr=parse_lr(lr),
            lr_mult=lr_mult,
            wd=wd,
            batch_size=batch_size,
            size=parse_size(size),
            resize=resize,
            seed=seed,
            valid_pct=valid_pct,
            valid_dir=valid_dir,
            head=head,
            pretrained=pretrained,
            weights=weights,
            aug=aug,
            balance=balance,
            positive=positive,
            workers=workers,
            force=force,
            quiet=quiet,
        )
    )


@app.command()
def predict(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    top_k: int = typer.Option(3, help="How many labels per image."),
    backend: str = typer.Option(
        "torch", help="Runner: torch, onnx, onnx-int8, trt-fp16, trt-int8."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
):
    """Top-k labels with probabilities, using the bundle's own preprocessing (no fastai)."""
    from edgeft.console import console, table
    from edgeft.predict import predict as run

    preds, skipped = run(bundle, images, top_k=top_k, backend=backend)
    if as_json:
        for p in preds:
            sys.stdout.write(
                json.dumps({"path": p.path, "top": [{"label": lb, "prob": pr} for lb, pr in p.top]})
                + "\n"
            )
    else:
        rows = [[p.path, *[f"{lb} {pr:.3f}" for lb, pr in p.top]] for p in preds]
        console().print(
            table(
                "Predictions", ["image", *[f"top-{i + 1}" for i in range(len(preds[0].top))]], rows
            )
        )
    if skipped:
        typer.echo(
            f"skipped {len(skipped)} unreadable images (e.g. {skipped[0][0]}: {skipped[0][1]})",
            err=True,
        )


@app.command()
def env(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """What is installed and usable here: torch, CUDA, ONNX Runtime providers, TensorRT, OpenCV, Jetson."""
    from edgeft.envinfo import collect

    info = collect()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.pretty import pprint

    pprint(info, expand_all=True)


# Commands defined in their own modules, each with ``register(app)``; listed here so that
# `edgeft --help` shows them. A module may import only light things at top level.
_COMMAND_MODULES: tuple[str, ...] = (
    "edgeft.cli_bench",
    "edgeft.cli_camera",
    "edgeft.cli_compare",
    "edgeft.cli_export",
)

for _mod in _COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and an exit code."""
    try:  # typer >= 0.20 vendors click as typer._click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions as click_exc

    try:
        # standalone_mode=False lets UserError through to us; typer then returns exit
        # codes (130 for Ctrl-C) instead of calling sys.exit itself.
        rv = app(standalone_mode=False)
    except UserError as exc:
        typer.echo(f"edgeft: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        rv = EXIT_INTERRUPTED
    except click_exc.ClickException as exc:  # bad usage: click's own message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        rv = EXIT_INTERRUPTED
    if rv == EXIT_INTERRUPTED:
        typer.echo("edgeft: interrupted; nothing half-written was kept", err=True)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
