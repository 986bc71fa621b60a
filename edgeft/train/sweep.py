"""``edgeft compare --sweep-freeze``: how transferable are the features, group by group?

Yosinski et al. (2014, "How transferable are features in deep neural networks?") copy the
first n layers of a network trained on task A into a new network for task B, re-initialise
the rest, and train on B either with the copied layers *frozen* (AnB) or *fine-tuned*
(AnB+). Here A is ImageNet, B the user's data and n counts edgeft's layer groups:
for K = 0..G (G body groups), the first K groups keep their pretrained weights, the other
body groups and the head start from random init, and then

- ``frozen``: the first K groups stay frozen (``freeze:K``), the rest trains;
- ``fine-tuned``: every layer trains (``full``).

K = 0 is training from scratch (one run serves both curves); K = G frozen is head-only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeft.models.archs import get_arch
from edgeft.train.compare_options import RunSpec


def plan_sweep(co, out, split_seed: int) -> list:
    """The sweep's runs: K = 0..G, both variants (K = 0 once), ``co.repeats`` each."""

    base = co.base
    n_groups = len(get_arch(base.arch).groups)
    runs = []
    for k in range(n_groups + 1):
        variants = ["frozen", "fine-tuned"] if k > 0 else ["scratch"]
        for variant in variants:
            for r in range(co.repeats):
                strategy = f"freeze:{k}" if variant == "frozen" else "full"
                name = f"sweep-k{k}-{variant}-r{r}"
                opts = replace(
                    base,
                    strategy=strategy,
                    freeze_epochs=0,
                    seed=base.seed + r,
                    split_seed=split_seed,
                    out=out / "runs" / name,
                    quiet=True,
                    force=True,
                    keep_pretrained_groups=k,
                    pretrained=True,
                )
                runs.append(RunSpec(name, f"sweep:{variant}", r, opts, {"sweep": variant, "k": k}))
    return runs


def aggregate_sweep(results: list[dict]) -> dict:
    """Mean and spread of accuracy per K for each variant (K = 0 belongs to both)."""
    rows: dict[str, list[dict]] = {"frozen": [], "fine-tuned": []}
    ks = sorted({r["extra"]["k"] for r in results if r.get("extra", {}).get("sweep")})
    for variant in rows:
        for k in ks:
            accs = [
                r["accuracy"]
                for r in results
                if r.get("extra", {}).get("k") == k
                and r["extra"].get("sweep") in (variant, "scratch")
            ]
            if accs:
                rows[variant].append(
                    {
                        "k": k,
                        "accuracy_mean": float(np.mean(accs)),
                        "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                        "n": len(accs),
                    }
                )
    return {"groups": max(ks) if ks else 0, "variants": rows}


def sweep_finding(sweep: dict) -> str:
    """One line grounded in the sweep's numbers: where fine-tuning beats freezing and by how
    much, where freezing peaks, and the best K overall (Yosinski et al.'s two findings)."""
    v = sweep["variants"]
    pairs = [
        (fr["k"], fr["accuracy_mean"], ft["accuracy_mean"])
        for fr, ft in zip(v["frozen"], v["fine-tuned"], strict=False)
        if fr["k"] > 0
    ]
    if not pairs:
        return "no sweep runs"
    gaps = {k: 100 * (ft - fr) for k, fr, ft in pairs}
    wins = [k for k, g in gaps.items() if g > 0]
    kmax = max(gaps, key=gaps.get)
    if len(wins) == len(gaps):
        parts = [
            f"fine-tuning beats freezing at every K >= 1, by {min(gaps.values()):.1f} to "
            f"{gaps[kmax]:.1f} points (most at K={kmax})"
        ]
    else:
        losses = [k for k in gaps if k not in wins]
        parts = [f"fine-tuning beats freezing at K={wins or 'none'}, not at K={losses}"]
    k_fr, acc_fr, _ = max(pairs, key=lambda p: p[1])
    parts.append(f"frozen features peak at K={k_fr} ({100 * acc_fr:.1f}%)")
    k_ft, _, acc_ft = max(pairs, key=lambda p: p[2])
    parts.append(
        f"the best run keeps K={k_ft} pretrained groups and fine-tunes ({100 * acc_ft:.1f}%)"
    )
    scratch = next((r["accuracy_mean"] for r in v["frozen"] if r["k"] == 0), None)
    if scratch is not None:
        parts.append(f"from scratch (K=0): {100 * scratch:.1f}%")
    return "; ".join(parts) + "."
