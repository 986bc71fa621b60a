"""PNG plots a person would rather look at than read (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(
    cm, labels: list[str], path: Path, title: str = "Confusion matrix"
) -> Path:
    """Draw ``cm[true, predicted]`` with counts in the cells."""
    plt = pyplot()
    cm = np.asarray(cm)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)), dpi=110)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > thresh else "black",
            )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def training_curves_png(history: list[dict], path: Path, title: str = "Training") -> Path:
    """Loss (train, valid) and validation accuracy per epoch; phases are shaded."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
    ax1.plot(epochs, [h.get("train_loss") for h in history], "o-", label="train loss")
    ax1.plot(epochs, [h.get("valid_loss") for h in history], "o-", label="valid loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [h.get("accuracy") for h in history], "o-", color="C2", label="accuracy")
    if any(h.get("top5_accuracy") is not None for h in history):
        ax2.plot(
            epochs, [h.get("top5_accuracy") for h in history], "o--", color="C3", label="top-5"
        )
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy")
    ax2.legend()
    phases = [h.get("phase") for h in history]
    for ax in (ax1, ax2):
        for i, ph in enumerate(phases):
            if ph == "frozen":
                ax.axvspan(epochs[i] - 0.5, epochs[i] + 0.5, color="grey", alpha=0.12, lw=0)
        ax.grid(alpha=0.3)
    fig.suptitle(title + ("  (grey: backbone frozen)" if "frozen" in phases else ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
