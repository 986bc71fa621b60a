"""Does a deployed form of the model still answer like the trained one?

The comparator for classifiers (after Polygraphy's ``CompareFunc`` and optimum's per-model
validation tolerances): on real labelled images, through the bundle's preprocessing,
compare a backend's outputs with the PyTorch FP32 reference: accuracy and its drop,
top-1 agreement, top-5 overlap, absolute logit error, per-class recall change, and the
images whose prediction flipped. Tolerances are per precision. Export checks and
``edgeft bench`` both use this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeft.errors import UserError
from edgeft.metrics import softmax
from edgeft.preprocess import Preprocessing


@dataclass(frozen=True)
class Tolerance:
    """What a backend of one precision may differ from the FP32 reference.

    Attributes:
        min_agreement: lowest top-1 agreement with the reference (0..1).
        max_accuracy_drop: largest accuracy drop in percentage points.
        max_scaled_diff: largest ``|out - ref| / (1 + |ref|)`` over all outputs, or
            ``None`` to skip: ``numpy.allclose``'s test with ``atol = rtol`` (Polygraphy and
            optimum compare with ``atol + rtol * |ref|`` too), so the bound grows with the
            logits' scale instead of being one absolute number.
    """

    min_agreement: float
    max_accuracy_drop: float
    max_scaled_diff: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# FP32 must match to float error: every logit within 1e-4 * (1 + |ref|). An absolute 1e-4
# was below what two correct FP32 kernels promise: PyTorch vs ONNX Runtime with AVX-512
# accumulation differed by 1.06e-4 on 224 px logits of a correct model (issue 14.9). The
# scaled bound still fails a swapped mean/std or a swapped logit column by orders of
# magnitude (tests/core/test_parity.py). FP32 answers may differ only where two logits tie
# within that error: agreement at least 99.5%, accuracy drop at most 0.5 pp.
# Reduced precisions are judged on answers, not logits: the accuracy drop, with an agreement floor.
# INT8's floor is 90%: on 400 EuroSAT images the agreement of good INT8 models moved between
# 93.5% and 96.75% with the number of float layers while the drop stayed within 1 point, and
# a 95% floor made export's float fallback chase that noise (12 layers kept in float).
# Export and bench share these defaults, so bench never fails what export just passed.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_agreement=0.995, max_accuracy_drop=0.5, max_scaled_diff=1e-4),
    "fp16": Tolerance(min_agreement=0.99, max_accuracy_drop=0.5),
    # bf16 keeps 8 bits of mantissa (fp16: 11): measured 99% agreement, 1.0 pp on EuroSAT
    # at 224 px with OpenVINO's bf16 hint on an AVX512-BF16 CPU.
    "bf16": Tolerance(min_agreement=0.985, max_accuracy_drop=1.0),
    "int8": Tolerance(min_agreement=0.90, max_accuracy_drop=1.0),
}


def precision_key(precision: str) -> str:
    """fp32, fp16, bf16 or int8 for a precision string such as ``fp16-autocast``."""
    for key in ("int8", "bf16", "fp16"):
        if key in precision:
            return key
    return "fp32"


def tolerance_for(precision: str, overrides: dict | None = None) -> Tolerance:
    """The default tolerance for ``precision`` (fp32/fp16/bf16/int8...), with overrides applied."""
    key = precision_key(precision)
    tol = DEFAULT_TOLERANCES[key]
    if overrides:
        tol = Tolerance(
            **{**tol.to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
        )
    return tol


def bundle_valid_samples(bundle) -> list[tuple[Path, str]]:
    """The validation images the bundle was trained with (its ``split.json``).

    Raises:
        UserError: the images are no longer where training found them.
    """
    split = bundle.split()
    missing = [p for p, _ in split["valid"] if not Path(p).is_file()]
    if missing:
        raise UserError(
            f"{len(missing)} of the bundle's validation images are gone (e.g. {missing[0]}): "
            "pass the labelled validation folder with --data"
        )
    return split["valid"]


def fold_input(x: np.ndarray, pp: Preprocessing) -> np.ndarray:
    """Undo mean/std on normalised input: what a folded-normalisation graph takes (0..1)."""
    mean = np.asarray(pp.mean, np.float32)[None, :, None, None]
    std = np.asarray(pp.std, np.float32)[None, :, None, None]
    return x * std + mean


def run_batches(
    runner, x: np.ndarray, batch_size: int = 32, pp: Preprocessing | None = None
) -> np.ndarray:
    """Outputs of ``runner`` over normalised input ``x`` (an array or labelled images);
    converts to 0..1 input when the runner's graph folds normalisation in
    (``runner.normalized_input`` is False)."""
    folded = not getattr(runner, "normalized_input", True)
    if folded and pp is None:
        raise ValueError("a folded-normalisation runner needs the preprocessing contract")
    outs = [runner.infer(fold_input(b, pp) if folded else b) for b in batches_of(x, batch_size)]
    return np.concatenate(outs).astype(np.float32)


def batches_of(x, size: int):
    """Batches of an array, or of :class:`edgeft.labelled.LabelledImages` (decoded in bounded
    memory)."""
    if hasattr(x, "batches"):
        return x.batches(size)
    return (x[i : i + size] for i in range(0, len(x), size))


def _differences(ref: np.ndarray, out: np.ndarray) -> dict:
    """Output differences. Non-finite outputs are counted, not folded into the figures: a
    NaN is a breach on its own (:func:`breaches`), and records stay valid JSON."""
    finite = np.isfinite(out)
    diff = np.abs(ref - out)[finite]
    scaled = diff / (1.0 + np.abs(ref[finite]))
    big = float(np.finfo(np.float32).max)  # all outputs non-finite: worst possible, finite
    return {
        "max_abs_diff": float(diff.max()) if diff.size else big,
        "mean_abs_diff": float(diff.mean()) if diff.size else big,
        "max_scaled_diff": float(scaled.max()) if scaled.size else big,
        "non_finite": int((~finite).sum()),
    }


def compare(
    ref: np.ndarray,
    out: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    out_kind: str = "logits",
    paths: list[str] | None = None,
) -> dict:
    """Figures of ``out`` (a backend's outputs) against ``ref`` (FP32 reference logits).

    Args:
        ref: reference logits ``(N, C)``.
        out: backend outputs ``(N, C)``: logits, or probabilities when ``out_kind='probs'``
            (then compared with the reference's softmax).
        targets: true class indices.
        labels: class names.
        paths: image paths, to name the flipped ones.
    """
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if out_kind == "probs":
        ref = softmax(ref)
    n, c = ref.shape
    p_ref, p_out = ref.argmax(1), out.argmax(1)
    acc_ref = float(np.mean(p_ref == targets))
    acc = float(np.mean(p_out == targets))
    k = min(5, c)
    top_ref = np.argsort(-ref, 1, kind="stable")[:, :k]
    top_out = np.argsort(-out, 1, kind="stable")[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out, strict=True)])
    recall_change = {}
    for i, label in enumerate(labels):
        m = targets == i
        if m.any():
            recall_change[label] = float(np.mean(p_out[m] == i) - np.mean(p_ref[m] == i))
    flipped = [
        {
            "index": int(j),
            "path": paths[j] if paths else None,
            "label": labels[targets[j]],
            "reference": labels[p_ref[j]],
            "prediction": labels[p_out[j]],
        }
        for j in np.flatnonzero(p_ref != p_out)
    ]
    return {
        "n": int(n),
        "reference_accuracy": acc_ref,
        "accuracy": acc,
        "accuracy_drop_pp": 100.0 * (acc_ref - acc),
        "agreement": float(np.mean(p_ref == p_out)),
        "top5_overlap": float(overlap),
        **_differences(ref, out),
        "compared_on": out_kind,
        "recall_change": recall_change,
        "flipped": flipped,
    }


def breaches(figures: dict, tol: Tolerance) -> list[str]:
    """Human-readable list of the tolerances ``figures`` break (empty when within)."""
    out = []
    if figures["agreement"] < tol.min_agreement:
        out.append(
            f"top-1 agreement {100 * figures['agreement']:.2f}% < {100 * tol.min_agreement:.2f}%"
        )
    if figures["accuracy_drop_pp"] > tol.max_accuracy_drop + 1e-9:
        out.append(
            f"accuracy drop {figures['accuracy_drop_pp']:.2f} pp > {tol.max_accuracy_drop:.2f} pp"
        )
    if figures.get("non_finite"):
        out.append(f"{figures['non_finite']} non-finite outputs (NaN or inf)")
    scaled = figures.get("max_scaled_diff")
    if tol.max_scaled_diff is not None and scaled is not None and scaled > tol.max_scaled_diff:
        out.append(
            f"max |diff|/(1+|ref|) {scaled:.2e} > {tol.max_scaled_diff:.0e} "
            f"(max |diff| {figures['max_abs_diff']:.2e})"
        )
    return out
