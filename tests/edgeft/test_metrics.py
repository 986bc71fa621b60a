"""Validation metrics: accuracy, its Wilson interval, the binary figures, and the warning a
small validation split gets (one image is more than a point)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from edgeft.metrics import classification_metrics, wilson_interval
from edgeft.train.report import small_valid_warning


@pytest.mark.parametrize("k,n", [(0, 10), (9, 10), (10, 10), (45, 50), (378, 400), (1, 1)])
def test_wilson_interval_equals_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx([ci.low, ci.high], abs=1e-6)


def test_no_images_no_interval():
    assert wilson_interval(0, 0) is None


def test_metrics_carry_intervals_that_shrink_with_more_images():
    rng = np.random.default_rng(0)

    def metrics(n):
        targets = rng.integers(0, 2, n)
        scores = np.eye(2)[targets] * 0.8 + rng.random((n, 2)) * 0.5  # mostly right
        return classification_metrics(scores, targets, ["NORMAL", "PNEUMONIA"], "PNEUMONIA")

    small, large = metrics(50), metrics(2000)
    for m in (small, large):
        lo, hi = m["accuracy_ci95"]
        assert lo <= m["accuracy"] <= hi
        b = m["binary"]
        assert b["sensitivity_ci95"][0] <= b["sensitivity"] <= b["sensitivity_ci95"][1]
        assert b["specificity_ci95"][0] <= b["specificity"] <= b["specificity_ci95"][1]
    width = lambda m: m["accuracy_ci95"][1] - m["accuracy_ci95"][0]  # noqa: E731
    assert width(small) > 3 * width(large)


def test_small_validation_split_is_warned_with_its_interval():
    line = small_valid_warning(50)
    assert line.startswith("small validation split: 50 images, one image is 2.0 points")
    assert "79-96%" in line and "--valid-pct" in line
    assert small_valid_warning(400) is None
