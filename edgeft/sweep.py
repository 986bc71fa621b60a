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

from edgeft.archs import get_arch


def plan_sweep(co, out, split_seed: int) -> list:
    """The sweep's runs: K = 0..G, both variants (K = 0 once), ``co.repeats`` each."""
    from edgeft.compare import RunSpec

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
