"""Test-time augmentation on a bundle's validation images, reported apart from its accuracy.

Issue 15 asked whether TTA belongs in the recipe. This measures it where it can pay: a
bundle fine-tuned with ``--aug dihedral`` (the main job's EuroSAT bundle), whose model saw
every rotation and flip in training. For each validation image the bundle's FP32 ONNX
model (ONNX Runtime, the form edgeft checks everything against) scores the image as it is,
the image and its mirror, or all 8 rotations/flips; the softmax outputs are averaged.
The cost is that many forward passes per image, so TTA is a choice for offline scoring,
not for the deployed model, which runs one pass: edgeft's bundle metrics stay single-pass.

    python -m benchmarks.studies.tta --bundle runs/eurosat/bundle

Writes ``benchmarks/results/tta.json`` and prints the table with the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.studies import RESULTS
from edgeft import formats
from edgeft.bundle import Bundle
from edgeft.labelled import load_labelled
from edgeft.parity import bundle_valid_samples
from edgeft.platform.cpu import describe_cpu

#: views per scheme: (number of 90-degree rotations, mirrored?)
SCHEMES = {
    "single pass": [(0, False)],
    "mirror (2 views)": [(0, False), (0, True)],
    "dihedral (8 views)": [(k, m) for k in range(4) for m in (False, True)],
}


def _view(x: np.ndarray, k: int, mirror: bool) -> np.ndarray:
    """An NCHW batch rotated ``k`` quarter turns, then mirrored left-right."""
    v = np.rot90(x, k, axes=(2, 3))
    return np.ascontiguousarray(v[..., ::-1] if mirror else v)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def measure(bundle: Path) -> dict:
    """Accuracy and seconds of each scheme over the bundle's validation images."""
    b = Bundle.load(bundle)
    if b.preprocessing.size[0] != b.preprocessing.size[1]:
        raise SystemExit("tta: rotations need a square input size")
    valid = load_labelled(bundle_valid_samples(b), b.labels, b.preprocessing)
    runner = formats.make_runner("onnx", b, "cpu", threads=2)
    runner.activate()
    targets = np.asarray(valid.targets)
    rows = {}
    for name, views in SCHEMES.items():
        t0, probs = time.perf_counter(), []
        for x in valid.batches(32):
            p = sum(_softmax(runner.infer(_view(x, k, m))) for k, m in views)
            probs.append(p / len(views))
        pred = np.concatenate(probs).argmax(1)
        rows[name] = {
            "views": len(views),
            "accuracy": float(np.mean(pred == targets)),
            "seconds": round(time.perf_counter() - t0, 2),
        }
    runner.deactivate()
    return {"bundle": str(bundle), "n_valid": len(targets), "cpu": describe_cpu(), "rows": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=RESULTS / "tta.json")
    args = ap.parse_args(argv)
    res = measure(args.bundle)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    base = res["rows"]["single pass"]
    print(f"{res['n_valid']} validation images, {res['cpu']}")
    for name, r in res["rows"].items():
        print(
            f"{name:20s} {100 * r['accuracy']:6.2f}%  "
            f"{100 * (r['accuracy'] - base['accuracy']):+5.2f} pp  {r['seconds']:6.2f} s"
        )


if __name__ == "__main__":
    main()
