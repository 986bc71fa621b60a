"""The bench report's PNGs: accuracy vs latency, latency distributions, flipped images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeft.plots import pyplot


def _plain_log_ticks(axis) -> None:
    """Log axes labelled 30, 40, 200 rather than 3x10^1: milliseconds read as numbers."""
    from matplotlib.ticker import FuncFormatter

    def label(v, _):
        lead = f"{v:e}"[0]  # label 1, 2, 3, 5 x 10^k; the other minor ticks stay unlabelled
        return f"{v:g}" if lead in "1235" else ""

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(FuncFormatter(label))


def accuracy_vs_latency_png(report: dict, path: Path, batch_size: int | None = None) -> Path | None:
    """One point per backend: p50 model latency at ``batch_size`` (default: the smallest)
    against accuracy on the labelled images; the reference's accuracy is a dashed line."""
    acc = {r["backend"]: r["figures"]["accuracy"] for r in report["ladder"]["rows"]}
    lat = report["latency"]
    if not lat or not acc:
        return None
    bs = batch_size or min(e["batch_size"] for e in lat)
    points = [
        (e["backend"], e["model"]["p50_ms"], 100 * acc[e["backend"]])
        for e in lat
        if e["batch_size"] == bs and e["backend"] in acc
    ]
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for i, (name, ms, a) in enumerate(points):
        ax.scatter([ms], [a], s=60, color=f"C{i}", zorder=3)
        ax.annotate(name, (ms, a), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ref = report["ladder"].get("reference", {}).get("accuracy")
    if ref is not None:
        ax.axhline(100 * ref, ls="--", color="grey", lw=1, label="PyTorch FP32 reference")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(f"p50 latency, model only, batch {bs} (ms, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy vs latency ({report['environment'].get('device')})")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def latency_distribution_png(report: dict, path: Path) -> Path | None:
    """Box plots of the raw per-call latencies, one panel per batch size, model only and end
    to end side by side for each backend."""
    lat = report["latency"]
    if not lat:
        return None
    sizes = sorted({e["batch_size"] for e in lat})
    plt = pyplot()
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4), dpi=110, squeeze=False)
    for ax, bs in zip(axes[0], sizes, strict=True):
        entries = [e for e in lat if e["batch_size"] == bs]
        data, labels, colors = [], [], []
        for e in entries:
            for kind, color in (("model", "C0"), ("e2e", "C1")):
                if e.get(kind):
                    data.append(np.asarray(e[kind]["samples_ms"]))
                    labels.append(f"{e['backend']}\n{kind}")
                    colors.append(color)
        box = ax.boxplot(data, showfliers=True, patch_artist=True, widths=0.6)
        for patch, color in zip(box["boxes"], colors, strict=True):
            patch.set_facecolor(color)
            patch.set_alpha(0.45)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=45, ha="right")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_title(f"batch {bs}")
        ax.set_ylabel("ms per call (log scale)")
        ax.grid(alpha=0.3, axis="y", which="both")
    fig.suptitle("Latency per call (blue: model only, orange: decode + preprocess + model)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def contact_sheet_png(
    flipped: list[dict], path: Path, title: str, limit: int = 48, columns: int = 6, thumb: int = 112
) -> Path | None:
    """Thumbnails of the images whose prediction flipped, captioned true / reference -> backend."""
    from edgeft.preprocess import ImageError, load_rgb

    items = [f for f in flipped if f.get("path")][:limit]
    if not items:
        return None
    plt = pyplot()
    columns = min(columns, len(items))
    rows = (len(items) + columns - 1) // columns
    fig, axes = plt.subplots(
        rows, columns, figsize=(max(1.9 * columns, 4.5), 2.45 * rows + 0.4), dpi=100, squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, item in zip(axes.ravel(), items, strict=False):
        try:
            img = load_rgb(item["path"])
            img.thumbnail((thumb, thumb))
            ax.imshow(np.asarray(img))
        except ImageError:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7)
        ax.set_title(
            f"{Path(item['path']).name[:22]}\ntrue {item['label'][:16]}\n"
            f"{item['reference'][:14]} -> {item['prediction'][:14]}",
            fontsize=6.5,
        )
    more = len([f for f in flipped if f.get("path")]) - len(items)
    fig.suptitle(
        title + (f" (first {len(items)}; {more} more in report.json)" if more > 0 else ""),
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path)
    plt.close(fig)
    return path
