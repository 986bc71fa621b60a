"""``edgeft finetune``: fine-tune a pretrained backbone with fastai and write a bundle.

The flow: scan and split the data, resolve the pretrained weights, build
``nn.Sequential(body, head)`` (:mod:`edgeft.models.network`), train it with a fastai
``Learner`` following the strategy (:mod:`edgeft.train.strategy`), evaluate on the
validation split, and write the bundle atomically (:mod:`edgeft.bundle`), its manifest
validated (:mod:`edgeft.manifest`) before anything is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgeft.bundle import check_out_dir, write_bundle_dir
from edgeft.console import console, progress, quiet_if
from edgeft.data import load_dataset
from edgeft.errors import UserError
from edgeft.interrupts import sigint_remembered
from edgeft.manifest import MANIFEST, SCHEMA, SCHEMA_VERSION, Manifest
from edgeft.models.archs import get_arch
from edgeft.preprocess import Preprocessing
from edgeft.train import recipe as recipes
from edgeft.train.distributed import World, one_line_failures, world
from edgeft.train.options import FinetuneOptions, parse_lr, precision_problem
from edgeft.train.report import print_counts, print_metrics, small_valid_warning
from edgeft.train.strategy import frozen_eval

__all__ = ["FinetuneOptions", "FinetuneResult", "finetune", "parse_lr"]


@dataclass
class FinetuneResult:
    """What a finetune run produced."""

    bundle: Path
    metrics: dict
    training: dict
    manifest: dict


def _preprocessing(opts: FinetuneOptions, spec, weights_src) -> Preprocessing:
    mean, std = spec.mean, spec.std
    if weights_src is not None and spec.source == "timm":
        from edgeft.models.lite0 import LITE0_MEAN, LITE0_STD

        mean, std = LITE0_MEAN, LITE0_STD
    return Preprocessing(size=opts.size, mean=mean, std=std, resize=opts.resize)


def _distributed_record(opts, run, w: World) -> dict:
    """How many processes trained, on what backend, with which batch and LR scaling."""
    return {
        "world_size": w.size,
        "backend": run["backend"],
        "batch_size_per_process": run["batch_size"],
        "batch_size_effective": run["batch_size"] * w.size,
        "lr_scale": opts.lr_scale if w.distributed else None,
        "lr_given": opts.lr if run["lr_source"] != "lr_find" else run["lr"],
    }


def _training_record(opts, strategy, spec, ds, run, split_seed, weights_src, wall, w) -> dict:
    discriminative = strategy.name == "discriminative"
    return {
        "strategy": strategy.label,
        "recipe": run["recipe"].record(),
        "epochs": opts.epochs,
        "freeze_epochs": opts.freeze_epochs if discriminative else 0,
        "lr": run["lr"],
        "lr_source": run["lr_source"],
        "lr_find": run.get("lr_find"),
        "lr_mult": opts.lr_mult if discriminative else None,
        "wd": run["wd"],
        "batch_size": run["batch_size"],
        "seed": opts.seed,
        "split_seed": split_seed,
        "keep_pretrained_groups": opts.keep_pretrained_groups,
        "aug": opts.aug,
        "balance": opts.balance,
        "head": opts.head,
        "frozen_groups_eval": frozen_eval(strategy, len(spec.groups) + 1),
        "frozen_phase": opts.frozen_phase,
        "fallback": run["fallback"],
        "phases": run["phases"],
        "history": run["history"],
        "train_seconds": run["train_seconds"],
        "wall_seconds": wall,
        "params": run["params"],
        "device": run["device"],
        "threads": run["threads"],
        "allocator": run["allocator"],
        "precision": opts.precision,
        "channels_last": opts.channels_last,
        "warnings": [w for w in [small_valid_warning(len(ds.valid))] if w],
        "distributed": _distributed_record(opts, run, w),
        "pretrained": weights_src.to_dict() if weights_src else None,
        "data": {
            "root": str(ds.root),
            "layout": ds.layout,
            "valid_pct": opts.valid_pct if ds.layout == "folder-per-class" else None,
            "n_train": len(ds.train),
            "n_valid": len(ds.valid),
            "class_counts": {"train": ds.counts("train"), "valid": ds.counts("valid")},
            "skipped": len(ds.skipped),
            "notes": list(ds.notes),
            "fingerprint": ds.fingerprint(),
        },
    }


def _manifest(opts, spec, ds, pp, training_rec, run) -> dict:
    metrics = run["metrics"]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "labels": ds.labels,
        "num_classes": len(ds.labels),
        "input": {"channels": 3, "height": pp.size[0], "width": pp.size[1]},
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


def _scan(opts: FinetuneOptions):
    split_seed = opts.seed if opts.split_seed is None else opts.split_seed
    with progress("checking images", None) as advance:
        ds = load_dataset(opts.data, opts.valid_pct, split_seed, opts.valid_dir, progress=advance)
    print_counts(ds)
    if opts.positive is not None and opts.positive not in ds.labels:
        raise UserError(
            f"--positive {opts.positive!r} is not a class: choose one of {', '.join(ds.labels)}"
        )
    return ds, split_seed


def _resolve(opts: FinetuneOptions, strategy, ds, w: World):
    """The options with every ``auto`` recipe value chosen (printed on one line), and the
    :class:`~edgeft.train.recipe.Recipe` that says why."""
    frozen_phase = strategy.name == "discriminative"
    recipe = recipes.choose(
        opts.batch_size,
        opts.epochs,
        opts.freeze_epochs,
        max(2, len(ds.train) // w.size),  # under a launcher: each process's share
        len(ds.labels),
        opts.size,
        frozen_phase,
    )
    console().print(recipe.line(frozen_phase))
    resolved = replace(
        opts,
        batch_size=recipe.batch_size.value,
        epochs=recipe.epochs.value,
        freeze_epochs=recipe.freeze_epochs.value,
    )
    return resolved, recipe


def _say_fallback(record: dict | None) -> None:
    """One line when the fine-tuned model lost to its probe and the probe was kept."""
    if record and record["kept"] == "probe":
        console().print(
            f"fine-tuning ended at {record['finetuned_accuracy']:.2%} validation accuracy, "
            f"below the frozen phase's {record['probe_accuracy']:.2%}: keeping the frozen "
            "phase's model (the pretrained body; --no-fallback keeps the fine-tuned one)"
        )


def _check_precision(precision: str) -> None:
    if precision == "fp32":
        return
    import torch

    from edgeft.platform.cpu import cpu_isa

    problem = precision_problem(precision, torch.cuda.is_available(), cpu_isa()["bf16"])
    if problem:
        raise UserError(problem)


def finetune(opts: FinetuneOptions) -> FinetuneResult | None:
    """Run a fine-tune end to end and write the bundle to ``opts.out``.

    Under ``torchrun``/``accelerate launch`` every process trains its share and rank 0 alone
    prints, evaluates and writes; the other ranks return ``None`` with nothing written.

    Raises:
        UserError: bad options, data, weights or output folder (checked before training),
            a training whose loss or weights became non-finite, or a lost peer process
            (nothing is written).
    """
    w = world()
    # a Ctrl-C is remembered, so that one a finalizer swallowed still stops the bundle write
    with quiet_if(opts.quiet or not w.main), one_line_failures(w), sigint_remembered():
        t_start = time.perf_counter()
        strategy = opts.validate()
        _check_precision(opts.precision)
        if w.main:  # only rank 0 writes: other nodes need not see --out
            check_out_dir(opts.out, opts.force)
        spec = get_arch(opts.arch)
        ds, split_seed = _scan(opts)
        from edgeft.train import training  # imports torch and fastai

        weights_src = None
        if opts.pretrained and strategy.pretrained:
            from edgeft.models.weights import resolve_weights

            weights_src = resolve_weights(opts.arch, opts.weights)
        pp = _preprocessing(opts, spec, weights_src)
        opts, recipe = _resolve(opts, strategy, ds, w)
        run = training.train(opts, strategy, ds, pp, weights_src, w)
        if run is None:
            return None
        run["recipe"] = recipe
        _say_fallback(run["fallback"])
        wall = time.perf_counter() - t_start
        rec = _training_record(opts, strategy, spec, ds, run, split_seed, weights_src, wall, w)
        manifest = _manifest(opts, spec, ds, pp, rec, run)

        def fill(tmp: Path) -> None:
            training.save_files(tmp, run, ds, manifest)
            valid = Manifest.model_validate(manifest).to_json_dict()  # never write an invalid one
            (tmp / MANIFEST).write_text(json.dumps(valid, indent=2) + "\n")

        out = write_bundle_dir(opts.out, fill, force=opts.force)
        print_metrics(run["metrics"], ds.labels)
        console().print(
            f"wall time {wall:.1f} s (training {run['train_seconds']:.1f} s, {opts.arch}, "
            f"{strategy.label}); bundle written to {out}"
        )
        return FinetuneResult(out, run["metrics"], rec, manifest)
