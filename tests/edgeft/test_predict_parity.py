"""`edgeft predict` gives fastai's own validation answers: the bundle's preprocessing is the
training one (issue: agreement >= 99.5% on every validation image)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_predict_agrees_with_fastai_get_preds(eurosat_bundle):
    ref = np.load(eurosat_bundle / "reference.npz")
    split = json.loads((eurosat_bundle / "split.json").read_text())
    root = Path(split["root"])
    labels = json.loads((eurosat_bundle / "bundle.json").read_text())["labels"]
    valid = [root / p for p, _ in split["valid"]]
    assert len(valid) == 400 and list(ref["paths"]) == [p for p, _ in split["valid"]]
    p = run_cli("predict", eurosat_bundle, *valid, "--json", "--top-k", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(v) for v in valid]
    ours = np.array([labels.index(r["top"][0]["label"]) for r in rows])
    theirs = ref["probs"].argmax(1)
    agreement = float(np.mean(ours == theirs))
    assert agreement >= 0.995, agreement
    # and the probabilities themselves match (same preprocessing, same weights, eval mode)
    probs = np.array([r["top"][0]["prob"] for r in rows])
    assert np.abs(probs - ref["probs"].max(1)).max() < 1e-4
