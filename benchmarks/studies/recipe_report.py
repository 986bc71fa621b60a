"""The recipe sweep's report: one table per dataset from the runs' JSON, with the goal
check (within 2 pp of the sweep's best and not below head-only), at seed 0 and on seed
means. Used by :mod:`benchmarks.studies.recipe_sweep` (``--report``)."""

from __future__ import annotations

import json
from pathlib import Path


def fmt_run(r: dict) -> str:
    acc = f"{100 * r['accuracy']:.1f}"
    ci = r.get("accuracy_ci95")
    if ci:
        acc += f" ({100 * ci[0]:.0f}-{100 * ci[1]:.0f})"
    b = r.get("binary")
    extra = ""
    if b:
        extra = f" | {100 * b['sensitivity']:.1f} | {100 * b['specificity']:.1f}"
    recipe = f"b{r['batch_size']}, {r['freeze_epochs']}+{r['epochs']} ep, {r['strategy']}"
    if r["strategy"] == "discriminative":
        recipe += f" ({_phase(r)}"
        kept = (r.get("fallback") or {}).get("kept")
        recipe += f", kept the {kept})" if kept else ")"
    return f"| {r['run']} | {recipe} | {acc}{extra} | {r['wall_seconds']:.0f} |"


def _phase(r: dict) -> str:
    """The frozen phase a discriminative run had (runs from before the probe: fastai's)."""
    settings = r.get("settings") or {}
    if settings.get("frozen_bn") == "eval":  # an early probe: BatchNorm eval, LR at its peak
        return "fastai, BN eval"
    return r.get("frozen_phase") or settings.get("frozen_phase") or "fastai"


def _seeds_line(name: str, recs: list[dict]) -> str | None:
    """Runs repeated with other training seeds: mean and spread, per run."""
    groups: dict[str, list[dict]] = {}
    for r in recs:
        groups.setdefault(r["run"].split("@")[0], []).append(r)
    parts = []
    for run, rs in sorted(groups.items()):
        if len(rs) < 2:
            continue
        accs = [100 * r["accuracy"] for r in sorted(rs, key=lambda r: r.get("seed", 0))]
        wall = sum(r["wall_seconds"] for r in rs) / len(rs)
        parts.append(
            f"{run}: mean {sum(accs) / len(accs):.2f}% over {len(accs)} seeds "
            f"({', '.join(f'{a:.2f}' for a in accs)}), mean wall {wall:.0f} s"
        )
    return ("Seeds (same split): " + "; ".join(parts)) if parts else None


def summary(out: Path, datasets, sweep: dict[str, dict]) -> str:
    """A table per dataset from the JSON files present, with the goal check."""
    lines = ["# Recipe sweep: edgeft's default vs a small sweep (MobileNetV2)", ""]
    lines += ["Every run: the same split; training seed 0 unless the name ends in @sN.", ""]
    for name in datasets:
        recs = [json.loads(p.read_text()) for p in sorted((out / name).glob("*.json"))]
        if not recs:
            lines += [f"## {name}: not run", ""]
            continue
        chest = any(r.get("binary") for r in recs)
        head = "| run | recipe | accuracy % (95% CI) |" + (" sens. % | spec. % |" if chest else "")
        lines += [f"## {name} ({recs[0]['n_train']} train / {recs[0]['n_valid']} valid)", ""]
        lines += [head + " wall s |", "|---|---|---|" + ("---|---|" if chest else "") + "---|"]
        lines += [fmt_run(r) for r in sorted(recs, key=lambda r: -r["accuracy"])]
        lines += ["", _verdict(recs, sweep), ""]
        seeds = _seeds_line(name, recs)
        if seeds:
            lines += [seeds, ""]
    cpus = sorted({r["cpu"] for p in out.glob("*/*.json") for r in [json.loads(p.read_text())]})
    lines.append("CPU: " + "; ".join(cpus) + " (2 cores).")
    return "\n".join(lines) + "\n"


def _verdict(recs: list[dict], sweep_names: dict[str, dict]) -> str:
    by = {r["run"]: r for r in recs}
    sweep = [by[k] for k in sweep_names if k in by]
    if "default" not in by or not sweep:
        return f"Sweep runs present: {len(sweep)} of 12; goal not checked."
    d, best = by["default"], max(sweep, key=lambda r: r["accuracy"])
    heads = [r["accuracy"] for r in sweep if r["strategy"] == "head"]
    gap = 100 * (best["accuracy"] - d["accuracy"])
    if not heads:
        return f"gap {gap:+.1f} pp to the sweep's best (no head-only run yet)"
    ok = gap <= 2 and d["accuracy"] >= max(heads)
    line = (
        f"Default {100 * d['accuracy']:.1f}% in {d['wall_seconds']:.0f} s; sweep best "
        f"{best['run']} {100 * best['accuracy']:.1f}% in {best['wall_seconds']:.0f} s "
        f"({len(sweep)} of 12 sweep runs); gap {gap:+.1f} pp; best head-only "
        f"{100 * max(heads):.1f}%. Goal (within 2 pp of the best, not below head-only): "
        + ("met" if ok else "NOT met")
    )
    return line + _seed_means_verdict(recs, sweep_names)


def _seed_means_verdict(recs: list[dict], sweep_names: dict[str, dict]) -> str:
    """The same check on the means over seeds, for the default and the head-only sweep
    runs repeated with the default's seeds (one seed of a small split moves points)."""
    runs: dict[str, dict[int, float]] = {}
    for r in recs:
        runs.setdefault(r["run"].split("@")[0], {})[r.get("seed", 0)] = r["accuracy"]
    seeds = set(runs.get("default", {}))
    heads = {k: v for k, v in runs.items() if k in sweep_names and k.endswith("-head")}
    heads = {k: v for k, v in heads.items() if set(v) >= seeds}
    if len(seeds) < 2 or not heads:
        return ""

    def mean(v):
        return 100 * sum(v[s] for s in seeds) / len(seeds)

    d = mean(runs["default"])
    name, h = max(((k, mean(v)) for k, v in heads.items()), key=lambda kv: kv[1])
    return (
        f" Over seeds {sorted(seeds)}: default {d:.2f}%, head-only {name} {h:.2f}% "
        f"({d - h:+.2f} pp): " + ("not below head-only" if d >= h else "below head-only")
    )
