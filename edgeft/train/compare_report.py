"""Reports of ``edgeft compare``: terminal tables in the seeds' form, JSON, Markdown, PNGs."""

from __future__ import annotations

from pathlib import Path

from edgeft.atomic import write_json_atomic
from edgeft.console import console, table


def _pct(v, digits=1):
    return "-" if v is None else f"{100 * v:.{digits}f}"


def _pm(mean, std, digits=1):
    return "-" if mean is None else f"{100 * mean:.{digits}f} ± {100 * (std or 0):.{digits}f}"


def rows_for_table(summary: dict) -> tuple[list[str], list[list]]:
    """Columns and rows: strategy, top-1 error, top-5 error, accuracy ± sd, time, params."""
    strategies = summary["strategies"]
    has_top5 = any(r.get("top5_error_mean") is not None for r in strategies)
    cols = (
        ["strategy", "top-1 error %"]
        + (["top-5 error %"] if has_top5 else [])
        + [f"accuracy % (± sd, {summary['repeats']} runs)", "train time s", "trainable params"]
    )
    rows = []
    for r in strategies:
        row = [r["strategy"], _pct(r["top1_error_mean"])]
        if has_top5:
            row.append(_pct(r.get("top5_error_mean")))
        row += [
            _pm(r["accuracy_mean"], r["accuracy_std"]),
            f"{r['train_seconds_mean']:.0f}",
            f"{r['trainable_params']:,}",
        ]
        rows.append(row)
    return cols, rows


def binary_rows(summary: dict) -> tuple[list[str], list[list]] | None:
    strategies = [r for r in summary["strategies"] if "sensitivity_mean" in r]
    if not strategies:
        return None
    pos = strategies[0]["positive"]
    cols = ["strategy", f"sensitivity ({pos}) %", "specificity %", "ROC AUC"]
    rows = [
        [
            r["strategy"],
            _pm(r["sensitivity_mean"], r.get("sensitivity_std")),
            _pm(r.get("specificity_mean"), r.get("specificity_std")),
            "-"
            if r.get("roc_auc_mean") is None
            else f"{r['roc_auc_mean']:.3f} ± {r.get('roc_auc_std', 0):.3f}",
        ]
        for r in strategies
    ]
    return cols, rows


def timing(summary: dict) -> str:
    """One line: runs, how many were reused, training time in all and this invocation's."""
    n = len(summary["runs"])
    return (
        f"{n} runs ({summary['reused_runs']} reused from an earlier invocation); training "
        f"{summary['train_seconds_total'] / 60:.1f} min in all; this invocation "
        f"{summary['wall_seconds'] / 60:.1f} min."
    )


def _batch(summary: dict) -> str:
    """The batch size: as given, or ``auto (N)`` with what the runs chose."""
    given = summary["options"]["batch_size"]
    if given != "auto":
        return str(given)
    chosen = sorted({r.get("batch_size") for r in summary["runs"]} - {None})
    return f"auto ({', '.join(map(str, chosen))})" if chosen else "auto"


def markdown(summary: dict) -> str:
    opts = summary["options"]
    lines = [
        f"# edgeft compare: {summary['arch']} on {Path(summary['data']).name}",
        "",
        f"Budget: {opts['epochs']} epochs per run, input {opts['size'][0]}x{opts['size'][1]}, "
        f"batch {_batch(summary)}, LR {opts['lr']}, augmentation {opts['aug']}, split seed "
        f"{opts['split_seed'] if opts['split_seed'] is not None else opts['seed']}, "
        f"{summary['repeats']} repeat(s) (seeds {opts['seed']}..{opts['seed'] + summary['repeats'] - 1}).",
        "",
    ]
    tables = [rows_for_table(summary), binary_rows(summary)] if summary["strategies"] else []
    for cols, rows in filter(None, tables):
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        lines.append("")
    if summary["recommendation"]:
        lines += [f"**Recommendation:** {summary['recommendation']}", ""]
    lines += [timing(summary), ""]
    if summary.get("sweep"):
        lines += [
            "## Freeze sweep (Yosinski et al.)",
            "",
            "| K pretrained groups | frozen % | fine-tuned % |",
            "|---|---|---|",
        ]
        v = summary["sweep"]["variants"]
        for fr, ft in zip(v["frozen"], v["fine-tuned"], strict=False):
            lines.append(
                f"| {fr['k']} | {_pm(fr['accuracy_mean'], fr['accuracy_std'])} | "
                f"{_pm(ft['accuracy_mean'], ft['accuracy_std'])} |"
            )
        lines += ["", f"**Finding:** {summary['sweep']['finding']}", ""]
    plots = ["compare.png"] if summary["strategies"] else []
    plots += ["sweep.png"] if summary.get("sweep") else []
    lines.append("Plots: " + ", ".join(plots))
    return "\n".join(lines) + "\n"


def plot_compare(summary: dict, path: Path) -> None:
    """Error per strategy with error bars (sd over repeats), and mean validation curves."""
    from edgeft.plots import pyplot

    plt = pyplot()
    rows = summary["strategies"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    names = [r["strategy"] for r in rows]
    errs = [100 * r["top1_error_mean"] for r in rows]
    sds = [100 * r["accuracy_std"] for r in rows]
    ax1.bar(names, errs, yerr=sds, capsize=4, color="C0", alpha=0.85)
    for i, e in enumerate(errs):
        ax1.text(i, e, f"{e:.1f}", ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("top-1 error (%)")
    ax1.set_title(f"Error per strategy (± sd, {summary['repeats']} runs)")
    for r in rows:
        ax2.plot(
            range(1, len(r["curve_mean"]) + 1),
            [100 * v for v in r["curve_mean"]],
            "o-",
            label=r["strategy"],
        )
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy (%)")
    ax2.set_title("Validation curves (mean over repeats)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(summary: dict, path: Path) -> None:
    """Accuracy against the number of pretrained groups kept, frozen vs fine-tuned."""
    from edgeft.plots import pyplot

    plt = pyplot()
    v = summary["sweep"]["variants"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, style in (("frozen", "o-"), ("fine-tuned", "s--")):
        pts = v[name]
        ax.errorbar(
            [p["k"] for p in pts],
            [100 * p["accuracy_mean"] for p in pts],
            yerr=[100 * p["accuracy_std"] for p in pts],
            fmt=style,
            capsize=3,
            label={
                "frozen": "first K groups pretrained + frozen (AnB)",
                "fine-tuned": "first K groups pretrained, all fine-tuned (AnB+)",
            }[name],
        )
    ax.set_xlabel("K: pretrained layer groups kept (the rest re-initialised)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_xticks(range(summary["sweep"]["groups"] + 1))
    ax.set_title(f"Transferability of {summary['arch']} features")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_reports(summary: dict, out: Path) -> None:
    """Print the tables and recommendation; write compare.json, compare.md and the PNGs."""
    if summary["strategies"]:
        cols, rows = rows_for_table(summary)
        console().print(table(f"{summary['arch']}: strategies compared", cols, rows))
        b = binary_rows(summary)
        if b:
            console().print(table("Screening metrics (validation)", *b))
        plot_compare(summary, out / "compare.png")
    if summary.get("sweep"):
        v = summary["sweep"]["variants"]
        console().print(
            table(
                "Freeze sweep: accuracy % by K pretrained groups kept",
                ["K", "frozen", "fine-tuned"],
                [
                    [
                        fr["k"],
                        _pm(fr["accuracy_mean"], fr["accuracy_std"]),
                        _pm(ft["accuracy_mean"], ft["accuracy_std"]),
                    ]
                    for fr, ft in zip(v["frozen"], v["fine-tuned"], strict=False)
                ],
            )
        )
        plot_sweep(summary, out / "sweep.png")
        console().print(f"[bold]Finding:[/bold] {summary['sweep']['finding']}")
    if summary["recommendation"]:
        console().print(f"[bold]Recommendation:[/bold] {summary['recommendation']}")
    console().print(timing(summary))
    write_json_atomic(out / "compare.json", summary)
    (out / "compare.md").write_text(markdown(summary))
    console().print(f"reports: {out / 'compare.json'}, {out / 'compare.md'}")
