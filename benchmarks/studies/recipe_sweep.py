"""Does edgeft's default recipe fit the data? The default against a small sweep, per dataset.

For each dataset (real images from ``$EDGEFT_ASSETS/datasets``; every run on the same split,
split seed 0, training seed 0 unless ``--seeds`` adds others; MobileNetV2 with torchvision's
ImageNet weights):

- ``eurosat``: EuroSAT-200, edgeft's stratified 20% split (1,600 train / 400 valid), 128 px;
- ``chest``: chest X-ray, 100 NORMAL + 100 PNEUMONIA drawn (seed 0) from ``val/`` to train,
  all 784 of ``test/`` to validate, 224 px, ``--aug dihedral``, positive PNEUMONIA;
- ``flowers``: flowers5, 50 images per class drawn (seed 0), stratified 20% split
  (200 + 50), 128 px;
- ``imagenette``: Imagenette 100 per class to train, 50 per class to validate, 224 px;

the runs are ``default`` (every recipe value auto), ``old-default`` (batch 64, 1 frozen +
4 epochs, contiguous memory format: fastai's ``fine_tune(4, freeze_epochs=1)`` as
edgeft ran it before), the sweep ``b{16,32,64}-e{5,10}-{head,disc}`` (total epochs; disc
= 1 frozen + the rest), and measured ideas (``default+NAME`` for a NAME of
:data:`VARIANTS`: LR ratio, frozen and total epochs, ``--lr auto`` with either range
test, bf16, contiguous memory, the dihedral augmentation; ``old-default+NAME`` applies one
to the old default). With several ``--seeds`` the runs take turns seed by seed, so runs
compared in one invocation share the machine's state. Each run writes ``RESULTS/recipe_sweep/<dataset>/<run>.json``
(accuracy, its 95% interval, sensitivity/specificity for chest, wall and training seconds,
the recipe it ran); a rerun skips runs whose JSON exists, so the study resumes after an
interruption. ``--report`` writes ``summary.md`` from whatever has run.

Run: ``nice -n 10 python -m benchmarks.studies.recipe_sweep --datasets chest --runs
default,old-default`` (``--runs sweep`` for the 12 sweep runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path

from benchmarks.studies import RESULTS
from benchmarks.studies.recipe_report import fmt_run, summary
from edgeft.atomic import write_json_atomic

OUT = RESULTS / "recipe_sweep"
IMAGE_EXT = (".jpg", ".jpeg", ".png")
DATASETS = {
    "eurosat": {"size": 128, "aug": "default"},
    "chest": {"size": 224, "aug": "dihedral", "positive": "PNEUMONIA"},
    "flowers": {"size": 128, "aug": "default"},
    "imagenette": {"size": 224, "aug": "default"},
}
# fastai's fine_tune as edgeft ran it: its own frozen phase, no fallback
FASTAI_PHASE = {"frozen_phase": "fastai", "fallback": False}
OLD_DEFAULT = {
    "batch_size": 64,
    "epochs": 4,
    "freeze_epochs": 1,
    "channels_last": False,
    **FASTAI_PHASE,
}
VARIANTS = {
    # measured, then dropped with their switches (their JSON stays in benchmarks/results/):
    # label smoothing 0.1 ("ls0.1", "e10-ls0.1"), a weight EMA of decay 0.99 ("ema") and
    # progressive resizing ("progressive": the first half of the fine-tuning epochs at 3/4
    # of the input size, each half its own one-cycle, as fastai's course does it)
    "freeze1": {"freeze_epochs": 1},
    "freeze2": {"freeze_epochs": 2},
    "freeze3": {"freeze_epochs": 3},
    "lr-auto": {"lr": "auto"},
    # the same, with fastai's own lr_find on the frozen model instead of the cached-feature one
    "lr-auto-fastai": {"lr": "auto", "lr_find": "fastai"},
    "lr1e-3": {"lr": 1e-3},
    "bf16": {"precision": "bf16"},
    "no-channels-last": {"channels_last": False},
    "e10": {"epochs": 9, "freeze_epochs": 1},
    "e12": {"epochs": 11, "freeze_epochs": 1},
    "lrmult10": {"lr_mult": 10.0},
    "lr4e-3": {"lr": 4e-3},
    "e10-lrmult10": {"epochs": 9, "freeze_epochs": 1, "lr_mult": 10.0},
    # satellite tiles and fundus photos have no "up": the 8 rotations/flips, no colour change
    "dihedral": {"aug": "dihedral"},
    # LP-FT (Kumar et al. 2022): the frozen phase a real linear probe (BatchNorm in eval
    # mode; "bn-eval" kept fastai's LR ending at its peak), and keeping it when fine-tuning
    # scores lower: edgeft's default since (runs named default before it: "fastai-phase")
    "fastai-phase": dict(FASTAI_PHASE),
    "probe": {"frozen_phase": "probe", "fallback": False},
    "probe-fallback": {"frozen_phase": "probe", "fallback": True},
    "freeze2-probe-fallback": {"freeze_epochs": 2, "frozen_phase": "probe", "fallback": True},
    "freeze3-probe-fallback": {"freeze_epochs": 3, "frozen_phase": "probe", "fallback": True},
    # the batch size alone given (epochs and the frozen phase still auto from it); the auto
    # batch could be 16 until these runs: "default+b16" runs are the default of that time
    "b16": {"batch_size": 16},
    "b32": {"batch_size": 32},
    "b64": {"batch_size": 64},
    "freeze6": {"freeze_epochs": 6},
}


def sweep_runs() -> dict[str, dict]:
    """The sweep: batch 16/32/64 x 5/10 epochs in all x head / discriminative (1 frozen)."""
    runs = {}
    for b in (16, 32, 64):
        for total in (5, 10):
            runs[f"b{b}-e{total}-head"] = {"batch_size": b, "epochs": total, "strategy": "head"}
            runs[f"b{b}-e{total}-disc"] = {
                "batch_size": b,
                "epochs": total - 1,
                "freeze_epochs": 1,
                **FASTAI_PHASE,
            }
    return runs


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)


def _csv(path: Path, rows: list[tuple[Path, str, str | None]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for p, label, split in rows:
            w.writerow([str(p), label, split or ""])
    return path


def dataset(name: str, assets: Path, work: Path) -> dict:
    """Where the dataset is (a folder or a CSV the study writes) and its fixed settings."""
    root = assets / "datasets"
    spec = dict(DATASETS[name])
    rng = random.Random(0)
    if name == "eurosat":
        spec["data"] = root / "eurosat_rgb_200pc"
    elif name == "imagenette":
        spec["data"] = root / "imagenette_224_subset"
    elif name == "chest":
        base = root / "chest_xray_pneumonia_224"
        rows = [
            (p, c, "train")
            for c in ("NORMAL", "PNEUMONIA")
            for p in rng.sample(_files(base / "val" / c), 100)
        ]
        rows += [
            (p, c, "valid") for c in ("NORMAL", "PNEUMONIA") for p in _files(base / "test" / c)
        ]
        spec["data"] = _csv(work / "chest_100_100.csv", rows)
    elif name == "flowers":
        base = root / "flowers5_128"
        classes = sorted(d.name for d in base.iterdir() if d.is_dir())
        rows = [(p, c, None) for c in classes for p in rng.sample(_files(base / c), 50)]
        spec["data"] = _csv(work / "flowers5_50.csv", rows)
    else:
        raise SystemExit(f"unknown dataset {name!r}: {', '.join(DATASETS)}")
    return spec


def _use_fastai_lr_find() -> None:
    """From now on in this process, ``--lr auto`` runs the range test fastai's course runs
    (the whole frozen model, 100 batches), to compare its cost and its LR with the
    cached-feature test edgeft runs."""
    import edgeft.train.training as training

    training.head_lr_find = lambda learn, _tmp: training.full_lr_find(learn)


def run_one(
    name: str, run: str, settings: dict, spec: dict, weights: str, out: Path, seed: int = 0
) -> dict:
    """Fine-tune one configuration with training seed ``seed`` (the split's is always 0)
    and write its JSON (skipped when it exists)."""
    from edgeft.train.finetune import FinetuneOptions, finetune

    run = run if seed == 0 else f"{run}@s{seed}"
    path = out / name / f"{run}.json"
    if path.is_file():
        return json.loads(path.read_text())
    settings = dict(settings)
    if settings.pop("lr_find", None) == "fastai":
        _use_fastai_lr_find()
    aug = settings.pop("aug", spec["aug"])
    kwargs = {"positive": spec.get("positive")} if spec.get("positive") else {}
    with tempfile.TemporaryDirectory(prefix="recipe-sweep-") as tmp:
        opts = FinetuneOptions(
            data=spec["data"],
            arch="mobilenet_v2",
            out=Path(tmp) / "bundle",
            size=(spec["size"], spec["size"]),
            aug=aug,
            weights=weights,
            seed=seed,
            split_seed=0,  # one split for every run and seed
            quiet=True,
            **kwargs,
            **settings,
        )
        t0 = time.perf_counter()
        res = finetune(opts)
        wall = time.perf_counter() - t0
    rec = {"dataset": name, "run": run, "seed": seed, "settings": settings, "aug": aug}
    rec.update(_figures(res, wall))
    write_json_atomic(path, rec)
    return rec


def _figures(res, wall: float) -> dict:
    """What a run's JSON records of its fine-tune."""
    m, tr = res.metrics, res.training
    return {
        "accuracy": m["accuracy"],
        "accuracy_ci95": m.get("accuracy_ci95"),
        "binary": m.get("binary"),
        "n_train": tr["data"]["n_train"],
        "n_valid": tr["data"]["n_valid"],
        "strategy": tr["strategy"],
        "batch_size": tr["batch_size"],
        "epochs": tr["epochs"],
        "freeze_epochs": tr["freeze_epochs"],
        "lr": tr["lr"],
        "lr_find": tr.get("lr_find"),
        "recipe": tr["recipe"],
        "frozen_phase": tr.get("frozen_phase"),
        "curve": [h.get("accuracy") for h in tr["history"]],
        "fallback": tr.get("fallback"),
        "epoch_seconds": [round(h["seconds"], 1) for h in tr["history"]],
        "train_seconds": tr["train_seconds"],
        "wall_seconds": wall,
        "threads": tr["threads"],
        "loadavg_1min": os.getloadavg()[0],
        "cpu": _cpu(),
    }


def _cpu() -> str:
    from edgeft.platform.cpu import describe_cpu

    return describe_cpu()


def plan(names: list[str]) -> dict[str, dict]:
    """Run name -> FinetuneOptions settings for ``--runs`` names (``sweep``: all 12)."""
    runs: dict[str, dict] = {}
    for n in names:
        if n == "default":
            runs[n] = {}
        elif n == "old-default":
            runs[n] = dict(OLD_DEFAULT)
        elif n.startswith("old-default+") and n.split("+", 1)[1] in VARIANTS:
            runs[n] = {**OLD_DEFAULT, **VARIANTS[n.split("+", 1)[1]]}
        elif n == "sweep":
            runs.update(sweep_runs())
        elif n in sweep_runs():
            runs[n] = sweep_runs()[n]
        elif n in VARIANTS:
            runs[f"default+{n}"] = dict(VARIANTS[n])
        else:
            raise SystemExit(f"unknown run {n!r}")
    return runs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="chest", help=f"comma-separated: {', '.join(DATASETS)}")
    ap.add_argument("--runs", default="default,old-default", help="default, old-default, sweep, "
                    "a sweep run name, a variant, or old-default+variant: " + ", ".join(VARIANTS))  # fmt: skip
    ap.add_argument("--assets", type=Path, default=Path(os.environ.get("EDGEFT_ASSETS", "")))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "recipe_sweep")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (split: 0)")
    ap.add_argument("--report", action="store_true", help="only write summary.md")
    args = ap.parse_args(argv)
    if not args.report:
        weights = str(args.assets / "weights" / "mobilenet_v2-b0353104.pth")
        for name in args.datasets.split(","):
            spec = dataset(name, args.assets, args.work)
            # seed by seed, every run once per seed: runs compared take turns on the machine
            for seed in (int(s) for s in args.seeds.split(",")):
                for run, settings in plan(args.runs.split(",")).items():
                    print(f"{name} {run} seed {seed} ...", flush=True)
                    r = run_one(name, run, settings, spec, weights, args.out, seed)
                    print(f"  {fmt_run(r)}", flush=True)
    text = summary(args.out, DATASETS, sweep_runs())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
