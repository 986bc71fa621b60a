"""edgeft's default fine-tuning recipe vs the classic PyTorch transfer-learning recipe.

One process, same data split (edgeft's stratified 20 % split, seed 0), same input size,
same pretrained MobileNetV2 weights, same CPU threads:

- ``edgeft``: ``edgeft finetune`` defaults (fastai ``fine_tune``: 1 frozen epoch, then
  4 unfrozen with discriminative LRs, base LR 2e-3, Adam, fastai's head and augmentations);
- ``classic``: the PyTorch tutorial "Transfer learning for computer vision" (finetuning
  the ConvNet): new linear classifier, SGD momentum 0.9, LR 0.001, StepLR every 7 epochs
  (gamma 0.1), RandomResizedCrop + horizontal flip, batch size 4, every layer trains;
- ``scratch``: ``edgeft finetune --strategy scratch`` (random init), edgeft's other defaults.

Validation accuracy after every epoch and cumulative wall time are recorded. The goal
(issue 2): edgeft reaches the classic recipe's final accuracy in at most half the classic
recipe's wall time, and ends higher.

Run: ``python -m benchmarks.studies.finetune_recipes --data DATA --weights W.pth --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.studies import RESULTS
from edgeft.platform.tvfix import ensure_torchvision


def run_edgeft(
    data: Path, weights: str | None, size: int, epochs: int, strategy: str, out: Path
) -> dict:
    """Fine-tune with edgeft's library entry point; returns per-epoch accuracy and time."""
    from edgeft.train.finetune import FinetuneOptions, finetune

    opts = FinetuneOptions(
        data=data,
        arch="mobilenet_v2",
        out=out,
        size=(size, size),
        quiet=True,
        strategy=strategy,
        epochs=epochs,
        weights=weights if strategy != "scratch" else None,
        force=True,
    )
    t0 = time.perf_counter()
    res = finetune(opts)
    wall = time.perf_counter() - t0
    curve, elapsed = [], 0.0
    for h in res.training["history"]:
        elapsed += h["seconds"]
        curve.append(
            {
                "epoch": h["epoch"],
                "phase": h["phase"],
                "accuracy": h["accuracy"],
                "elapsed_s": elapsed,
            }
        )
    return {
        "recipe": f"edgeft {strategy}",
        "curve": curve,
        "final_accuracy": res.metrics["accuracy"],
        "train_seconds": res.training["train_seconds"],
        "wall_seconds": wall,
        "lr": res.training["lr"],
        "epochs_total": len(curve),
    }


def _classic_loaders(ds, size: int):
    """The tutorial's transforms: RandomResizedCrop + flip to train, Resize + CenterCrop to
    validate (256/224 scaled to this input size), ImageNet normalisation, batch 4."""
    import torch

    ensure_torchvision()
    from torchvision import transforms as T

    from edgeft.images import load_rgb

    index = {lb: i for i, lb in enumerate(ds.labels)}
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    valid_tf = T.Compose(
        [T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), norm]
    )

    class Images(torch.utils.data.Dataset):
        def __init__(self, samples, tf):
            self.samples, self.tf = samples, tf

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            s = self.samples[i]
            return self.tf(load_rgb(s.path)), index[s.label]

    train = torch.utils.data.DataLoader(Images(ds.train, train_tf), batch_size=4, shuffle=True)
    return train, torch.utils.data.DataLoader(Images(ds.valid, valid_tf), batch_size=64)


def run_classic(data: Path, weights: str, size: int, epochs: int, seed: int = 0) -> dict:
    """The PyTorch tutorial recipe on edgeft's split (same images, same sizes)."""
    import torch
    from torch import nn

    from edgeft.data import load_dataset
    from edgeft.models.weights import read_checkpoint

    tv = ensure_torchvision()
    torch.manual_seed(seed)
    ds = load_dataset(data, valid_pct=0.2, seed=seed)
    train_dl, valid_dl = _classic_loaders(ds, size)
    model = tv.models.mobilenet_v2(weights=None)
    model.load_state_dict(read_checkpoint(weights))
    model.classifier[1] = nn.Linear(model.last_channel, len(ds.labels))
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    curve, elapsed = [], 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for x, y in train_dl:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in valid_dl)
        elapsed += time.perf_counter() - t0
        curve.append({"epoch": epoch, "accuracy": correct / len(ds.valid), "elapsed_s": elapsed})
        print(
            f"classic epoch {epoch}: {100 * curve[-1]['accuracy']:.2f}% at {elapsed:.0f} s",
            flush=True,
        )
    return {
        "recipe": "classic PyTorch",
        "curve": curve,
        "final_accuracy": curve[-1]["accuracy"],
        "wall_seconds": elapsed,
        "epochs_total": epochs,
    }


def time_to_reach(curve: list[dict], target: float) -> float | None:
    """Elapsed seconds at the first epoch whose accuracy is at least ``target``."""
    return next((c["elapsed_s"] for c in curve if c["accuracy"] >= target - 1e-9), None)


def summarize(runs: dict) -> dict:
    """Time-to-accuracy of edgeft's default vs the classic recipe's final accuracy."""
    classic, ours = runs["classic"], runs["edgeft"]
    target = classic["final_accuracy"]
    t_ours = time_to_reach(ours["curve"], target)
    out = {
        "classic_final_accuracy": target,
        "classic_seconds": classic["curve"][-1]["elapsed_s"],
        "edgeft_seconds_to_classic_accuracy": t_ours,
        "time_ratio": None if t_ours is None else t_ours / classic["curve"][-1]["elapsed_s"],
        "edgeft_final_accuracy": ours["final_accuracy"],
        "edgeft_ends_higher_by_pp": 100 * (ours["final_accuracy"] - target),
    }
    if "scratch" in runs:
        out["scratch_final_accuracy"] = runs["scratch"]["final_accuracy"]
        out["pretrained_vs_scratch_pp"] = 100 * (
            ours["final_accuracy"] - runs["scratch"]["final_accuracy"]
        )
    out["goal_met"] = bool(
        out["time_ratio"] is not None
        and out["time_ratio"] <= 0.5
        and out["edgeft_ends_higher_by_pp"] > 0
    )
    return out


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for run in runs.values():
        xs = [0] + [c["elapsed_s"] for c in run["curve"]]
        ys = [None] + [100 * c["accuracy"] for c in run["curve"]]
        ax.plot(xs[1:], ys[1:], "o-", label=run["recipe"])
    ax.set_xlabel("wall time (s, training + validation)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("MobileNetV2 on EuroSAT-200: time to accuracy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"# Fine-tuning recipes: {result['data_name']}, MobileNetV2, {result['size']} px, {result['threads']} threads",
        "",
        "| recipe | epochs | final accuracy | wall time (s) |",
        "|---|---|---|---|",
    ]
    for run in result["runs"].values():
        lines.append(
            f"| {run['recipe']} | {run['epochs_total']} | {100 * run['final_accuracy']:.2f}% | "
            f"{run['curve'][-1]['elapsed_s']:.0f} |"
        )
    lines += ["", "Accuracy after each epoch (cumulative seconds):", ""]
    for run in result["runs"].values():
        pts = ", ".join(f"{100 * c['accuracy']:.1f}% @ {c['elapsed_s']:.0f}s" for c in run["curve"])
        lines.append(f"- {run['recipe']}: {pts}")
    t = s["edgeft_seconds_to_classic_accuracy"]
    lines += [
        "",
        f"edgeft reached the classic recipe's final {100 * s['classic_final_accuracy']:.2f}% after "
        f"{t:.0f} s vs {s['classic_seconds']:.0f} s (ratio {s['time_ratio']:.2f}); it ends "
        f"{s['edgeft_ends_higher_by_pp']:+.2f} points higher."
        if t is not None
        else "",
        "Goal (ratio <= 0.5 and ends higher): " + ("met" if s["goal_met"] else "NOT met"),
    ]
    if "scratch_final_accuracy" in s:
        lines.append(
            f"Scratch (random init) ends at {100 * s['scratch_final_accuracy']:.2f}%: "
            f"{s['pretrained_vs_scratch_pp']:.1f} points below edgeft's pretrained default."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument(
        "--weights",
        required=True,
        help="MobileNetV2 ImageNet checkpoint (mobilenet_v2-b0353104.pth)",
    )
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classic-epochs", type=int, default=5)
    ap.add_argument(
        "--edgeft-epochs", type=int, default=4, help="unfrozen epochs after the frozen one"
    )
    ap.add_argument("--no-scratch", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs["edgeft"] = run_edgeft(
            args.data,
            args.weights,
            args.size,
            args.edgeft_epochs,
            "discriminative",
            Path(tmp) / "edgeft",
        )
        print(f"edgeft: {runs['edgeft']['curve']}", flush=True)
        runs["classic"] = run_classic(args.data, args.weights, args.size, args.classic_epochs)
        if not args.no_scratch:
            runs["scratch"] = run_edgeft(
                args.data, None, args.size, args.edgeft_epochs + 1, "scratch", Path(tmp) / "scratch"
            )
            print(f"scratch: {runs['scratch']['curve']}", flush=True)
    result = {
        "data": str(args.data),
        "data_name": args.data.name,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "cpu": os.cpu_count(),
        "runs": runs,
        "summary": summarize(runs),
    }
    (args.out / "finetune_recipes.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "finetune_recipes.md").write_text(markdown(result))
    plot(runs, args.out / "finetune_recipes.png")
    print(markdown(result))
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
