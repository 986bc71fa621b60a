"""What ``edgeft finetune`` prints: the class counts, the recipe, the validation metrics."""

from __future__ import annotations

from edgeft.console import console, pct, table


def print_counts(ds) -> None:
    """Images per class and split, with warnings on imbalance, skipped files and notes."""
    train, valid = ds.counts("train"), ds.counts("valid")
    rows = [[label, train[label], valid[label]] for label in ds.labels]
    rows.append(["total", sum(train.values()), sum(valid.values())])
    console().print(table("Images per class", ["class", "train", "valid"], rows))
    lo, hi = min(train.values()), max(train.values())
    if hi >= 1.5 * lo:
        console().print(
            f"[yellow]imbalanced: the largest class has {hi / lo:.1f}x the images of the smallest; "
            "consider --balance weights or --balance oversample[/yellow]"
        )
    if ds.skipped:
        console().print(
            f"[yellow]skipped {len(ds.skipped)} unreadable or non-image files "
            f"(e.g. {ds.skipped[0][0]}: {ds.skipped[0][1]})[/yellow]"
        )
    for note in getattr(ds, "notes", []):
        console().print(f"[yellow]{note}[/yellow]")
    warning = small_valid_warning(sum(valid.values()))
    if warning:
        console().print(f"[yellow]{warning}[/yellow]")


#: Below this many validation images one image is more than a point of accuracy.
SMALL_VALID = 100


def small_valid_warning(n_valid: int) -> str | None:
    """One line when the validation split is too small to tell models apart, else None."""
    if n_valid >= SMALL_VALID:
        return None
    from edgeft.metrics import wilson_interval

    lo, hi = wilson_interval(round(0.9 * n_valid), n_valid) or (0.0, 1.0)
    return (
        f"small validation split: {n_valid} images, one image is {100 / n_valid:.1f} points of "
        f"accuracy and a measured 90% could be anywhere in {100 * lo:.0f}-{100 * hi:.0f}% (95% "
        "interval): models closer than that cannot be told apart; validate on more images "
        "(--valid-pct, --valid-dir)"
    )


def _ci(ci) -> str:
    return f" ({pct(ci[0])} - {pct(ci[1])})" if ci else ""


def print_metrics(metrics: dict, labels: list[str]) -> None:
    """Print the validation metrics as tables."""
    rows = [["accuracy", pct(metrics["accuracy"])], ["error", pct(metrics["error"])]]
    ci = metrics.get("accuracy_ci95")
    if ci:
        rows.append(["accuracy 95% CI (Wilson)", f"{pct(ci[0])} - {pct(ci[1])}"])
    if "top5_accuracy" in metrics:
        rows.append(["top-5 accuracy", pct(metrics["top5_accuracy"])])
    b = metrics.get("binary")
    if b:
        rows += [
            [
                f"sensitivity ({b['positive']})",
                pct(b["sensitivity"]) + _ci(b.get("sensitivity_ci95")),
            ],
            ["specificity", pct(b["specificity"]) + _ci(b.get("specificity_ci95"))],
            ["ROC AUC", "-" if b["roc_auc"] is None else f"{b['roc_auc']:.4f}"],
        ]
    console().print(table(f"Validation metrics ({metrics['n']} images)", ["metric", "value"], rows))
    pc = metrics["per_class"]
    console().print(
        table(
            "Per class",
            ["class", "precision", "recall", "support"],
            [
                [lb, pct(pc[lb]["precision"]), pct(pc[lb]["recall"]), pc[lb]["support"]]
                for lb in labels
            ],
        )
    )
