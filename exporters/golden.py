"""Golden images: a few validation images the FP32 model classifies confidently, copied into
the bundle with the reference outputs on them, so that a device can prove -- before it
trusts a bundle, e.g. on a hot swap -- that its runtime still answers like the trained model
(:meth:`edgeft.runtime.Classifier.self_test`).

Chosen per class, round-robin, among correctly classified images with the largest margin
between the top two logits: a correct deployment of any precision agrees with the
reference on all of them, so a single disagreement is a real fault, not a near-tie.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeft.atomic import sha256_file
from edgeft.manifest import GOLDEN_DIR, GoldenImage, GoldenSpec

PER_CLASS = 2
MAX_IMAGES = 16


def choose(reference: np.ndarray, targets: np.ndarray, n_classes: int) -> list[int]:
    """Indices of the golden images (see the module docstring)."""
    top2 = np.sort(reference, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    correct = reference.argmax(1) == targets
    by_class = []
    for c in range(n_classes):
        idx = np.flatnonzero(correct & (targets == c))
        by_class.append(list(idx[np.argsort(-margin[idx], kind="stable")][:PER_CLASS]))
    out = []
    for rank in range(PER_CLASS):
        out += [int(ids[rank]) for ids in by_class if rank < len(ids)]
    return out[:MAX_IMAGES]


def stage(evidence, work: Path) -> tuple[GoldenSpec, Path] | None:
    """Copy the golden images and their reference outputs into ``work/golden``; returns the
    spec and the staged folder, or None when no image qualifies."""
    valid = evidence.valid()
    reference = np.asarray(evidence.reference(), dtype=np.float32)
    picked = choose(reference, valid.targets, len(evidence.labels))
    if not picked:
        return None
    folder = work / GOLDEN_DIR
    folder.mkdir()
    images = []
    for n, i in enumerate(picked):
        src = Path(valid.paths[i])
        dst = folder / f"{n:02d}{src.suffix.lower()}"
        shutil.copyfile(src, dst)
        label = evidence.labels[int(valid.targets[i])]
        images.append(
            GoldenImage(file=f"{GOLDEN_DIR}/{dst.name}", label=label, sha256=sha256_file(dst))
        )
    ref = folder / "reference.npz"
    np.savez(ref, logits=reference[picked])
    spec = GoldenSpec(images=images, reference_sha256=sha256_file(ref), output="logits")
    return spec, folder
