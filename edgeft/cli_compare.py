"""``edgeft compare``: options in, one library call out (:func:`edgeft.compare.run_compare`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""

    @app.command()
    def compare(
        data: Path = typer.Option(
            ..., "--data", help="Folder of class folders, train/+valid/, or CSV."
        ),
        arch: str = typer.Option(..., "--arch", help="Backbone (see `edgeft finetune --help`)."),
        out: Path = typer.Option(
            ..., "--out", help="Folder for runs and reports (reruns resume here)."
        ),
        strategies: str = typer.Option(
            "scratch,head,discriminative,full",
            help="Comma-separated: scratch, head, discriminative, full, freeze:K.",
        ),
        epochs: int = typer.Option(
            5, help="Epochs per run (discriminative spends --freeze-epochs of them frozen)."
        ),
        repeats: int = typer.Option(
            1, help="Runs per strategy with seeds seed..seed+R-1 (same split)."
        ),
        sweep_freeze: bool = typer.Option(
            False,
            help="Also the freeze sweep: K = 0..G pretrained groups, "
            "frozen vs fine-tuned (Yosinski et al.).",
        ),
        freeze_epochs: int = typer.Option(
            1, help="Frozen epochs of discriminative, within --epochs."
        ),
        lr: str = typer.Option(
            "2e-3", help="Learning rate (or 'auto'), the same for every strategy."
        ),
        batch_size: int = typer.Option(64, help="Batch size."),
        size: str = typer.Option("224", help="Input size: N or HxW."),
        seed: int = typer.Option(0, help="Seed of the split and of the first repeat."),
        valid_pct: float = typer.Option(
            0.2, help="Held-out share per class (folder-per-class layout)."
        ),
        valid_dir: Path | None = typer.Option(
            None, help="A separate folder of class folders to validate on."
        ),
        head: str = typer.Option("fastai", help="fastai, linear or fc:N."),
        weights: str | None = typer.Option(
            None, help="Pretrained checkpoint file or torchvision variant."
        ),
        aug: str = typer.Option("default", help="default | dihedral | none."),
        balance: str = typer.Option("none", help="none | weights | oversample."),
        positive: str | None = typer.Option(
            None, help="Positive class for sensitivity/specificity/AUC."
        ),
        force: bool = typer.Option(False, help="Discard runs already in --out and start over."),
    ):
        """Train one model per strategy on the same split and budget, and compare them."""
        from edgeft.compare import CompareOptions, run_compare
        from edgeft.finetune import FinetuneOptions, parse_lr, parse_size

        base = FinetuneOptions(
            data=data,
            arch=arch,
            out=out,
            epochs=epochs,
            freeze_epochs=freeze_epochs,
            lr=parse_lr(lr),
            batch_size=batch_size,
            size=parse_size(size),
            seed=seed,
            valid_pct=valid_pct,
            valid_dir=valid_dir,
            head=head,
            weights=weights,
            aug=aug,
            balance=balance,
            positive=positive,
        )
        names = [s.strip() for s in strategies.split(",") if s.strip()]
        run_compare(
            CompareOptions(
                base=base, strategies=names, repeats=repeats, sweep_freeze=sweep_freeze, force=force
            ),
            out,
        )
