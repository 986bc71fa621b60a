"""Classification metrics in numpy: used by finetune, export checks, bench and compare."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of rows whose target is among the ``k`` highest scores."""
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == targets[:, None], axis=1)))


def confusion_matrix(pred: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """``cm[true, predicted]`` counts."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (targets, pred), 1)
    return cm


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties count half); ``None`` if one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> list[float] | None:
    """Wilson score interval of a proportion (95% by default); ``None`` when ``n`` is 0.

    Written out rather than taken from scipy (``binomtest(k, n).proportion_ci("wilson")``
    gives the same numbers, checked in the tests): the device runtime imports this module
    and scipy is no dependency there. Unlike the normal approximation it stays inside [0, 1]
    and is not zero-width at 0% or 100%.
    """
    if n <= 0:
        return None
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; floating point would miss it by 1e-16.
    lo = 0.0 if successes == 0 else float(max(0.0, centre - half))
    hi = 1.0 if successes == n else float(min(1.0, centre + half))
    return [lo, hi]


def classification_metrics(
    scores: np.ndarray, targets: np.ndarray, labels: list[str], positive: str | None = None
) -> dict:
    """Accuracy with its 95% Wilson interval, top-5 (5+ classes), per-class
    precision/recall, confusion matrix, and for two classes sensitivity and specificity
    (with their intervals) and ROC AUC of the ``positive`` class.

    Args:
        scores: ``(N, C)`` probabilities or logits.
        targets: ``(N,)`` class indices.
        labels: class names, index order.
        positive: the positive class for binary metrics; default ``labels[1]``.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    n = len(labels)
    pred = scores.argmax(axis=1)
    cm = confusion_matrix(pred, targets, n)
    out: dict = {
        "n": int(len(targets)),
        "accuracy": float(np.mean(pred == targets)) if len(targets) else 0.0,
    }
    out["error"] = 1.0 - out["accuracy"]
    # How far the accuracy of this validation split is from the model's true accuracy:
    # with 50 images one image is 2 points and the interval spans about 20.
    out["accuracy_ci95"] = wilson_interval(int(np.sum(pred == targets)), len(targets))
    if n >= 5:
        out["top5_accuracy"] = topk_accuracy(scores, targets, 5)
        out["top5_error"] = 1.0 - out["top5_accuracy"]
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(cm[i, i])
        predicted, actual = int(cm[:, i].sum()), int(cm[i, :].sum())
        per_class[label] = {
            "precision": tp / predicted if predicted else None,
            "recall": tp / actual if actual else None,
            "support": actual,
        }
    out["per_class"] = per_class
    out["confusion_matrix"] = cm.tolist()
    if n == 2:
        pos = labels.index(positive) if positive is not None else 1
        neg = 1 - pos
        tp, fn = int(cm[pos, pos]), int(cm[pos, neg])
        tn, fp = int(cm[neg, neg]), int(cm[neg, pos])
        probs = (
            scores
            if np.allclose(scores.sum(axis=1), 1.0, atol=1e-3) and scores.min() >= 0
            else softmax(scores)
        )
        out["binary"] = {
            "positive": labels[pos],
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "sensitivity_ci95": wilson_interval(tp, tp + fn),
            "specificity": tn / (tn + fp) if tn + fp else None,
            "specificity_ci95": wilson_interval(tn, tn + fp),
            "roc_auc": roc_auc(probs[:, pos], targets == pos),
        }
    return out
