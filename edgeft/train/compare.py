"""``edgeft compare``: the seeds' transfer-learning experiments as a command.

Trains one model per strategy (and per repeat) under the same budget and the same split,
and reports per strategy: top-1 / top-5 error, accuracy mean and spread over repeats
(training seeds), wall time, trainable parameters, the binary screening metrics for two
classes, and the bundle each run produced. ``--sweep-freeze`` adds Yosinski et al.'s
transferability curve (:mod:`edgeft.train.sweep`).

Budget: every run trains ``epochs`` epochs in total; ``discriminative`` spends
``freeze_epochs`` of them with the body frozen. Split: one split seed for all runs;
repeat ``r`` trains with seed ``seed + r``.

Resumable: each finished run leaves ``runs/<name>/result.json`` (written atomically after
its bundle); a rerun with the same options reuses finished runs and trains only the rest.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from edgeft.atomic import write_json_atomic
from edgeft.console import console, quiet_if
from edgeft.errors import UserError
from edgeft.train.compare_options import CompareOptions, RunSpec
from edgeft.train.options import FinetuneOptions
from edgeft.train.strategy import parse_strategy

SCHEMA = "edgeft.train.compare/1"


def _config(opts: FinetuneOptions) -> dict:
    d = asdict(opts)
    for k in ("out", "force", "quiet", "extra", "dist_timeout"):
        d.pop(k, None)
    return json.loads(json.dumps(d, default=str))


def plan_runs(co: CompareOptions, out: Path) -> list[RunSpec]:
    """Every run of the comparison, in order (strategies x repeats, then the sweep)."""
    base = co.base
    split_seed = base.seed if base.split_seed is None else base.split_seed
    runs = []
    for strategy in co.strategies:
        label = parse_strategy(strategy).label
        for r in range(co.repeats):
            epochs, freeze = base.epochs, 0
            if label == "discriminative":
                freeze = base.freeze_epochs if base.freeze_epochs < base.epochs else 1
                epochs = base.epochs - freeze
            name = f"{label.replace(':', '')}-r{r}"
            opts = replace(
                base,
                strategy=label,
                epochs=epochs,
                freeze_epochs=freeze,
                seed=base.seed + r,
                split_seed=split_seed,
                out=out / "runs" / name,
                quiet=True,
                force=True,
                weights=None if label == "scratch" else base.weights,
                # each strategy as named: the fallback could hand discriminative's run
                # back as its probe, a head-only model
                fallback=False,
            )
            runs.append(RunSpec(name, label, r, opts))
    if co.sweep_freeze:
        from edgeft.train.sweep import plan_sweep

        runs += plan_sweep(co, out, split_seed)
    return runs


def _result_path(out: Path, name: str) -> Path:
    return out / "runs" / name / "result.json"


def load_finished(out: Path, spec: RunSpec) -> dict | None:
    """The result of a finished run with the same options, or ``None``.

    Raises:
        UserError: the folder holds a run of the same name with other options.
    """
    path = _result_path(out, spec.name)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("config") != _config(spec.opts):
        changed = sorted(
            k for k in _config(spec.opts) if rec.get("config", {}).get(k) != _config(spec.opts)[k]
        )
        raise UserError(
            f"{out} holds run {spec.name} made with other options ({', '.join(changed[:4])}): "
            "use another --out, or --force to start over"
        )
    return rec


def run_one(spec: RunSpec, out: Path) -> dict:
    """Fine-tune one run and record its result (after its bundle is complete)."""
    from edgeft.train.finetune import finetune

    t0 = time.perf_counter()
    res = finetune(spec.opts)
    m, tr = res.metrics, res.training
    rec = {
        "name": spec.name,
        "group": spec.group,
        "repeat": spec.repeat,
        "seed": spec.opts.seed,
        "extra": spec.extra,
        "config": _config(spec.opts),
        "bundle": str(res.bundle),
        "accuracy": m["accuracy"],
        "error": m["error"],
        "top5_error": m.get("top5_error"),
        "binary": m.get("binary"),
        "curve": [h.get("accuracy") for h in tr["history"]],
        "train_seconds": tr["train_seconds"],
        "batch_size": tr["batch_size"],
        "wall_seconds": time.perf_counter() - t0,
        "threads": tr["threads"],
        "trainable_params": tr["params"]["trainable"],
        "total_params": tr["params"]["total"],
        "split_fingerprint": tr["data"]["fingerprint"],
    }
    write_json_atomic(_result_path(out, spec.name), rec)
    return rec


def run_quiet(spec: RunSpec, out: Path) -> dict:
    """:func:`run_one` without console output (the unit of work of ``--jobs``)."""
    with quiet_if(True):
        return run_one(spec, out)


def _serial(pending: list, n: int):
    for i, (spec, out) in pending:
        console().print(f"[{i + 1}/{n}] {spec.name}: training ...")
        yield i, run_quiet(spec, out)


def _run_all(runs: list[RunSpec], out: Path, co: CompareOptions) -> tuple[list[dict], int]:
    """Every run's result in plan order (finished ones reused); returns them and the count
    of reused runs. ``--jobs N`` trains the missing runs in N processes."""
    from edgeft.train.compare_jobs import run_parallel, threads_per_job, torch_threads

    n = len(runs)
    results: list = [load_finished(out, spec) for spec in runs]
    for i, (spec, rec) in enumerate(zip(runs, results, strict=True), 1):
        if rec is not None:
            console().print(f"[{i}/{n}] {spec.name}: reused ({100 * rec['accuracy']:.2f}%)")
    pending = [(i, (spec, out)) for i, spec in enumerate(runs) if results[i] is None]
    reused = n - len(pending)
    jobs = min(co.jobs, len(pending))
    threads = co.threads or threads_per_job(co.jobs)
    if jobs > 1:
        console().print(
            f"training {len(pending)} runs in {jobs} processes ({threads} thread"
            f"{'s' if threads > 1 else ''} each) ..."
        )
        finished = run_parallel(pending, run_quiet, jobs, threads)
    else:
        finished = _serial(pending, n)
    with torch_threads(co.threads if jobs <= 1 else None):
        for i, rec in finished:
            results[i] = rec
            console().print(
                f"[{i + 1}/{n}] {runs[i].name}: {100 * rec['accuracy']:.2f}% in "
                f"{rec['wall_seconds']:.0f} s"
            )
    return results, reused


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def aggregate(results: list[dict], groups: list[str]) -> list[dict]:
    """Per group (strategy): means and spreads over repeats."""
    rows = []
    for g in groups:
        rs = [r for r in results if r["group"] == g]
        if not rs:
            continue
        acc_m, acc_s = _mean_std([r["accuracy"] for r in rs])
        row = {
            "strategy": g,
            "repeats": len(rs),
            "accuracy_mean": acc_m,
            "accuracy_std": acc_s,
            "top1_error_mean": 1 - acc_m,
            "top5_error_mean": None,
            "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in rs])),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])),
            "trainable_params": rs[0]["trainable_params"],
            "total_params": rs[0]["total_params"],
            "bundles": [r["bundle"] for r in rs],
            "curve_mean": [float(v) for v in np.mean([r["curve"] for r in rs], axis=0)],
        }
        if rs[0]["top5_error"] is not None:
            row["top5_error_mean"], row["top5_error_std"] = _mean_std([r["top5_error"] for r in rs])
        if rs[0]["binary"]:
            for key in ("sensitivity", "specificity", "roc_auc"):
                vals = [r["binary"][key] for r in rs if r["binary"][key] is not None]
                if vals:
                    row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(vals)
            row["positive"] = rs[0]["binary"]["positive"]
        rows.append(row)
    return rows


def recommendation(rows: list[dict]) -> str:
    """One line grounded in the measured numbers: the best strategy, its margin over the
    runner-up (and whether the repeats can tell them apart), and how far scratch is behind."""
    if not rows:
        return "no runs"
    ranked = sorted(rows, key=lambda r: -r["accuracy_mean"])
    best = ranked[0]
    names = {
        "head": "head-only",
        "full": "full fine-tune",
        "discriminative": "discriminative fine-tune",
        "scratch": "training from scratch",
    }
    name = names.get(best["strategy"], best["strategy"])
    parts = []
    if len(ranked) > 1:
        second = ranked[1]
        gap = 100 * (best["accuracy_mean"] - second["accuracy_mean"])
        spread = 100 * max(best["accuracy_std"], second["accuracy_std"])
        text = (
            f"{name} is best here ({100 * best['accuracy_mean']:.1f}%) by {gap:.1f} points over "
            f"{names.get(second['strategy'], second['strategy'])}"
        )
        if best["repeats"] > 1 and gap <= 2 * spread:
            text += f" (within the spread of {spread:.1f} points over {best['repeats']} repeats: not a clear winner)"
        parts.append(text)
    else:
        parts.append(f"{name}: {100 * best['accuracy_mean']:.1f}%")
    scratch = next((r for r in rows if r["strategy"] == "scratch"), None)
    if scratch is not None and scratch is not best:
        parts.append(
            f"scratch is {100 * (best['accuracy_mean'] - scratch['accuracy_mean']):.1f} points behind"
        )
    fastest = min(rows, key=lambda r: r["train_seconds_mean"])
    if fastest is not best and fastest["strategy"] != "scratch":
        parts.append(
            f"{names.get(fastest['strategy'], fastest['strategy'])} trains "
            f"{best['train_seconds_mean'] / fastest['train_seconds_mean']:.1f}x faster at "
            f"{100 * (best['accuracy_mean'] - fastest['accuracy_mean']):.1f} points less"
        )
    return "; ".join(parts) + "."


def run_compare(co: CompareOptions, out: Path) -> dict:
    """Run (or resume) a comparison into ``out``; returns the summary written to compare.json.

    Raises:
        UserError: bad options, or ``out`` holds runs made with other options (without --force).
    """
    import shutil

    from edgeft.train.distributed import world

    co.validate()
    if world().distributed:
        raise UserError(
            "edgeft compare starts its own processes (--jobs N): run it without "
            "torchrun/accelerate launch"
        )
    t0 = time.perf_counter()
    out = Path(out)
    if co.force and out.exists():
        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs = plan_runs(co, out)
    results, reused = _run_all(runs, out, co)
    splits = {r["split_fingerprint"] for r in results}
    if len(splits) != 1:  # every run must have seen the same images
        raise UserError(
            f"runs in {out} used different data ({len(splits)} fingerprints): use --force"
        )
    groups = [parse_strategy(s).label for s in co.strategies]
    summary = {
        "schema": SCHEMA,
        "arch": co.base.arch,
        "data": str(co.base.data),
        "options": _config(co.base),
        "repeats": co.repeats,
        "runs": results,
        "reused_runs": reused,
        "jobs": co.jobs,
        "threads_per_run": sorted({r.get("threads") for r in results}, key=str),
        "strategies": aggregate(results, groups),
        # training time of every run (reused ones included) and this invocation's wall time
        "train_seconds_total": round(sum(r["wall_seconds"] for r in results), 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    summary["recommendation"] = recommendation(summary["strategies"]) if groups else None
    if co.sweep_freeze:
        from edgeft.train.sweep import aggregate_sweep, sweep_finding

        summary["sweep"] = aggregate_sweep(results)
        summary["sweep"]["finding"] = sweep_finding(summary["sweep"])
    from edgeft.train.compare_report import write_reports

    write_reports(summary, out)
    return summary
