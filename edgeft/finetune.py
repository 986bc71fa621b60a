"""``edgeft finetune``: fine-tune a pretrained backbone with fastai and write a bundle.

The flow: scan and split the data, resolve the pretrained weights, build
``nn.Sequential(body, head)`` (:mod:`edgeft.model`), train it with a fastai ``Learner``
following the strategy (:mod:`edgeft.strategy`), evaluate on the validation split, and
write the bundle atomically (:mod:`edgeft.bundle`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.archs import get_arch, parse_head
from edgeft.bundle import SCHEMA, SCHEMA_VERSION, check_out_dir, write_bundle_dir
from edgeft.console import console, pct, progress, quiet_if, table
from edgeft.dataset import Dataset, load_dataset
from edgeft.errors import UserError
from edgeft.loaders import AUG_PRESETS, BALANCE_CHOICES
from edgeft.preprocess import RESIZE_METHODS, Preprocessing
from edgeft.strategy import Strategy, frozen_eval, parse_strategy


@dataclass
class FinetuneOptions:
    """Everything ``edgeft finetune`` takes; defaults are edgeft's default recipe."""

    data: Path
    arch: str
    out: Path
    strategy: str = "discriminative"
    epochs: int = 4
    freeze_epochs: int = 1
    lr: float | str = 2e-3  # a number, or "auto" (fastai lr_find, valley)
    lr_mult: float = 100.0
    wd: float | None = None  # None: fastai's default (0.01, decoupled)
    batch_size: int = 64
    size: tuple[int, int] = (224, 224)
    resize: str = "crop"
    seed: int = 0
    split_seed: int | None = None  # seed of the train/valid split; default: ``seed``
    valid_pct: float = 0.2
    valid_dir: Path | None = None
    head: str = "fastai"
    pretrained: bool = True
    weights: str | None = None
    aug: str = "default"
    balance: str = "none"
    positive: str | None = None
    workers: int = 0
    # Yosinski et al.'s transfer protocol (used by ``edgeft compare --sweep-freeze``): keep
    # the pretrained weights of the first K body groups only and re-initialise the rest.
    keep_pretrained_groups: int | None = None
    force: bool = False
    quiet: bool = False
    extra: dict = field(default_factory=dict)

    def validate(self) -> Strategy:
        """Check option values before any work starts; returns the parsed strategy."""
        spec = get_arch(self.arch)
        strategy = parse_strategy(self.strategy, len(spec.groups))
        parse_head(self.head)
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, not {self.epochs}")
        if self.freeze_epochs < 0:
            raise UserError(f"--freeze-epochs must be 0 or more, not {self.freeze_epochs}")
        if isinstance(self.lr, str) and self.lr != "auto":
            raise UserError(f"--lr must be a number or 'auto', not {self.lr!r}")
        if not isinstance(self.lr, str) and not self.lr > 0:
            raise UserError(f"--lr must be positive, not {self.lr}")
        if self.lr_mult < 1:
            raise UserError(f"--lr-mult must be at least 1, not {self.lr_mult}")
        if self.wd is not None and self.wd < 0:
            raise UserError(f"--wd must be 0 or more, not {self.wd}")
        if self.batch_size < 2:
            raise UserError(f"--batch-size must be at least 2, not {self.batch_size}")
        if min(self.size) < 16 or max(self.size) > 2048:
            raise UserError(f"--size must be between 16 and 2048 pixels, not {self.size}")
        if self.resize not in RESIZE_METHODS:
            raise UserError(
                f"unknown --resize {self.resize!r}: use one of {', '.join(RESIZE_METHODS)}"
            )
        if self.aug not in AUG_PRESETS:
            raise UserError(f"unknown --aug {self.aug!r}: use one of {', '.join(AUG_PRESETS)}")
        if self.balance not in BALANCE_CHOICES:
            raise UserError(
                f"unknown --balance {self.balance!r}: use one of {', '.join(BALANCE_CHOICES)}"
            )
        if self.workers < 0:
            raise UserError(f"--workers must be 0 or more, not {self.workers}")
        n_groups = len(spec.groups)
        if (
            self.keep_pretrained_groups is not None
            and not 0 <= self.keep_pretrained_groups <= n_groups
        ):
            raise UserError(f"keep_pretrained_groups must be between 0 and {n_groups}")
        if strategy.name == "scratch" and self.weights:
            raise UserError("--strategy scratch trains from random weights: drop --weights")
        return strategy


@dataclass
class FinetuneResult:
    """What a finetune run produced."""

    bundle: Path
    metrics: dict
    training: dict
    manifest: dict


def parse_size(value: str | int) -> tuple[int, int]:
    """``224`` or ``HxW`` (e.g. ``160x224``) as ``(height, width)``."""
    try:
        if isinstance(value, int):
            return value, value
        parts = str(value).lower().split("x")
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise UserError(f"--size must be N or HxW (e.g. 224 or 160x224), not {value!r}")


def parse_lr(value: str) -> float | str:
    """A learning rate as a number, or ``"auto"`` (fastai's lr_find)."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise UserError(f"--lr must be a number or 'auto', not {value!r}") from None


def _print_counts(ds: Dataset) -> None:
    train, valid = ds.counts("train"), ds.counts("valid")
    rows = [[label, train[label], valid[label]] for label in ds.labels]
    rows.append(["total", sum(train.values()), sum(valid.values())])
    console().print(table("Images per class", ["class", "train", "valid"], rows))
    lo, hi = min(train.values()), max(train.values())
    if hi >= 1.5 * lo:
        console().print(
            f"[yellow]imbalanced: the largest class has {hi / lo:.1f}x the images of the smallest; "
            "consider --balance weights or --balance oversample[/yellow]"
        )
    if ds.skipped:
        console().print(
            f"[yellow]skipped {len(ds.skipped)} unreadable or non-image files "
            f"(e.g. {ds.skipped[0][0]}: {ds.skipped[0][1]})[/yellow]"
        )


def print_metrics(metrics: dict, labels: list[str]) -> None:
    """Print the validation metrics as tables."""
    rows = [["accuracy", pct(metrics["accuracy"])], ["error", pct(metrics["error"])]]
    if "top5_accuracy" in metrics:
        rows.append(["top-5 accuracy", pct(metrics["top5_accuracy"])])
    b = metrics.get("binary")
    if b:
        rows += [
            [f"sensitivity ({b['positive']})", pct(b["sensitivity"])],
            ["specificity", pct(b["specificity"])],
            ["ROC AUC", "-" if b["roc_auc"] is None else f"{b['roc_auc']:.4f}"],
        ]
    console().print(table(f"Validation metrics ({metrics['n']} images)", ["metric", "value"], rows))
    pc = metrics["per_class"]
    console().print(
        table(
            "Per class",
            ["class", "precision", "recall", "support"],
            [
                [lb, pct(pc[lb]["precision"]), pct(pc[lb]["recall"]), pc[lb]["support"]]
                for lb in labels
            ],
        )
    )


def finetune(opts: FinetuneOptions) -> FinetuneResult:
    """Run a fine-tune end to end and write the bundle to ``opts.out``.

    Raises:
        UserError: bad options, data, weights or output folder (checked before training).
    """
    with quiet_if(opts.quiet):
        return _finetune(opts)


def _finetune(opts: FinetuneOptions) -> FinetuneResult:
    t_start = time.perf_counter()
    strategy = opts.validate()
    check_out_dir(opts.out, opts.force)
    spec = get_arch(opts.arch)
    positive = opts.positive

    with progress("checking images", None) as advance:
        split_seed = opts.seed if opts.split_seed is None else opts.split_seed
        ds = load_dataset(opts.data, opts.valid_pct, split_seed, opts.valid_dir, progress=advance)
    _print_counts(ds)
    if positive is not None and positive not in ds.labels:
        raise UserError(
            f"--positive {positive!r} is not a class: choose one of {', '.join(ds.labels)}"
        )

    from edgeft import training  # imports torch and fastai

    pretrained = opts.pretrained and strategy.pretrained
    weights_src = None
    if pretrained:
        from edgeft.weights import resolve_weights

        weights_src = resolve_weights(opts.arch, opts.weights)
    mean, std = (spec.mean, spec.std)
    if weights_src is not None and spec.source == "timm":
        from edgeft.lite0 import LITE0_MEAN, LITE0_STD

        mean, std = LITE0_MEAN, LITE0_STD
    pp = Preprocessing(size=opts.size, mean=mean, std=std, resize=opts.resize)

    run = training.train(opts, strategy, ds, pp, weights_src)
    metrics = run["metrics"]
    wall = time.perf_counter() - t_start

    training_rec = {
        "strategy": strategy.label,
        "epochs": opts.epochs,
        "freeze_epochs": opts.freeze_epochs if strategy.name == "discriminative" else 0,
        "lr": run["lr"],
        "lr_source": run["lr_source"],
        "lr_find": run.get("lr_find"),
        "lr_mult": opts.lr_mult if strategy.name == "discriminative" else None,
        "wd": run["wd"],
        "batch_size": run["batch_size"],
        "seed": opts.seed,
        "split_seed": split_seed,
        "keep_pretrained_groups": opts.keep_pretrained_groups,
        "aug": opts.aug,
        "balance": opts.balance,
        "head": opts.head,
        "frozen_groups_eval": frozen_eval(strategy, len(spec.groups) + 1),
        "phases": run["phases"],
        "history": run["history"],
        "train_seconds": run["train_seconds"],
        "wall_seconds": wall,
        "params": run["params"],
        "device": run["device"],
        "threads": run["threads"],
        "pretrained": weights_src.to_dict() if weights_src else None,
        "data": {
            "root": str(ds.root),
            "layout": ds.layout,
            "valid_pct": opts.valid_pct if ds.layout == "folder-per-class" else None,
            "n_train": len(ds.train),
            "n_valid": len(ds.valid),
            "class_counts": {"train": ds.counts("train"), "valid": ds.counts("valid")},
            "skipped": len(ds.skipped),
            "fingerprint": ds.fingerprint(),
        },
    }
    manifest = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "labels": ds.labels,
        "num_classes": len(ds.labels),
        "input": {
            "channels": 3,
            "height": pp.size[0],
            "width": pp.size[1],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "preprocessing": pp.to_dict(),
        "model": {
            "arch": opts.arch,
            "head": opts.head,
            "num_classes": len(ds.labels),
            "weights": "weights.pt",
            "groups": [list(g) for g in spec.groups],
            "output": "logits",
        },
        "training": training_rec,
        "metrics": {"valid": metrics, "positive": metrics.get("binary", {}).get("positive")},
        "artifacts": {},
        "provenance": run["provenance"],
    }

    def fill(tmp: Path) -> None:
        training.save_files(tmp, run, ds, manifest)
        (tmp / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")

    out = write_bundle_dir(opts.out, fill, force=opts.force)
    print_metrics(metrics, ds.labels)
    console().print(
        f"wall time {wall:.1f} s (training {run['train_seconds']:.1f} s, {opts.arch}, "
        f"{strategy.label}); bundle written to {out}"
    )
    return FinetuneResult(out, metrics, training_rec, manifest)
