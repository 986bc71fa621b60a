"""The golden-image self-test: does this runtime, on this device, still answer like the
trained model? (The golden images and the FP32 reference outputs on them are recorded in
the bundle by ``edgeft export``; see :mod:`exporters.golden`.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeft.metrics import softmax
from edgeft.parity import tolerance_for


@dataclass
class SelfTest:
    """The result of :meth:`edgeft.runtime.Classifier.self_test`.

    Attributes:
        passed: every golden image got the reference's top-1 (and, for FP32 forms, every
            output is within the FP32 tolerance of the reference).
        checked: golden images run (0 when the bundle has none).
        detail: one line for logs and ``/health``.
        figures: agreement and largest scaled difference.
    """

    passed: bool
    checked: int
    detail: str
    figures: dict = field(default_factory=dict)


def run_self_test(clf) -> SelfTest:
    """Run the bundle's golden images through ``clf`` and compare with the reference."""
    golden = clf.bundle.golden()  # sha256 of every file checked here
    if golden is None:
        return SelfTest(True, 0, "no golden images recorded (bundle exported by an older edgeft)")
    images, ref_file = golden
    with np.load(ref_file) as data:
        ref = np.asarray(data["logits"], dtype=np.float64)
    batch = clf.prepare([str(p) for p, _ in images])
    out = np.asarray(clf.raw_outputs(batch), dtype=np.float64)
    if clf.runner.output == "probs":
        ref = softmax(ref)
    if out.shape != ref.shape or not np.isfinite(out).all():
        return SelfTest(
            False, len(images), f"golden outputs have shape {out.shape} or are not finite"
        )
    agree = ref.argmax(1) == out.argmax(1)
    scaled = float((np.abs(out - ref) / (1.0 + np.abs(ref))).max())
    figures = {"agreement": float(agree.mean()), "max_scaled_diff": scaled}
    if not agree.all():
        bad = [str(images[i][0].name) for i in np.flatnonzero(~agree)]
        return SelfTest(
            False, len(images), f"golden images answered differently: {', '.join(bad)}", figures
        )
    tol = tolerance_for(clf.runner.precision).max_scaled_diff
    if tol is not None and scaled > tol:
        return SelfTest(
            False,
            len(images),
            f"golden outputs differ by {scaled:.2e} (> {tol:.0e}) from the reference",
            figures,
        )
    return SelfTest(True, len(images), f"{len(images)} golden images reproduced", figures)
