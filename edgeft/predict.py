"""``edgeft predict``: top-k labels for image files with a bundle, without fastai."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeft import formats
from edgeft.bundle import Bundle
from edgeft.errors import UserError
from edgeft.images import ImageError, is_image_file, load_rgb
from edgeft.metrics import softmax
from edgeft.options import opt
from edgeft.preprocess import artifact_preprocessing, image_to_input


@dataclass
class PredictOptions:
    """``edgeft predict`` options."""

    bundle: Path = opt(help="Bundle folder.", argument=True)
    images: list[Path] = opt(help="Image files or folders.", argument=True)
    top_k: int = opt(3, "How many labels per image.")
    backend: str = opt("torch", "Backend to run: " + ", ".join(formats.names()) + ".")
    device: str = opt("cpu", "cpu or cuda.")
    as_json: bool = opt(False, "JSON lines instead of a table.", "--json")
    trust_modified: bool = opt(
        False, "Run an artifact whose sha256 differs from its record (warned) instead of refusing."
    )


@dataclass
class Prediction:
    """Top-k result for one image."""

    path: str
    top: list[tuple[str, float]]


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into image paths, sorted per folder.

    Raises:
        UserError: an input does not exist, or no image is found.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p} does not exist: pass image files or folders")
    if not out:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}")
    return out


def predict(
    bundle_path,
    inputs,
    top_k: int = 3,
    backend: str = "torch",
    batch_size: int = 32,
    device: str = "cpu",
    trust_modified: bool = False,
):
    """Classify images with a bundle through one of its runners.

    Returns:
        ``(predictions, skipped)``: a :class:`Prediction` per readable image, and
        ``(path, reason)`` for each unreadable one.

    Raises:
        UserError: bad bundle, no readable image, or ``top_k`` < 1.
    """
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {top_k}")
    bundle = Bundle.load(bundle_path, trust_modified)
    labels = bundle.labels
    paths = collect_images(inputs)
    preds, skipped = [], []
    ok, why = formats.status(backend, bundle, device)
    if not ok:
        raise UserError(f"backend {backend} cannot run {bundle.path} here: {why}")
    runner = formats.make_runner(backend, bundle, device)
    pp, _, _ = artifact_preprocessing(bundle, runner.record)
    if not runner.normalized_input:
        pp = pp.folded()
    with runner:
        for start in range(0, len(paths), batch_size):
            chunk, arrays = [], []
            for p in paths[start : start + batch_size]:
                try:
                    arrays.append(image_to_input(load_rgb(p, pp.exif_transpose), pp))
                    chunk.append(p)
                except ImageError as exc:
                    skipped.append((str(p), str(exc)))
            if not arrays:
                continue
            out = np.asarray(runner.infer(np.stack(arrays)), dtype=np.float64)
            probs = out if runner.output == "probs" else softmax(out)
            if not np.isfinite(probs).all():
                raise UserError(
                    f"backend {backend} returned non-finite outputs for {chunk[0]}: the model "
                    "is broken (NaN weights?); re-run finetune or export"
                )
            k = min(top_k, len(labels))
            for p, row in zip(chunk, probs, strict=True):
                idx = np.argsort(-row, kind="stable")[:k]
                preds.append(Prediction(str(p), [(labels[i], float(row[i])) for i in idx]))
    if not preds:
        raise UserError(f"none of the {len(paths)} images could be read (e.g. {skipped[0][1]})")
    return preds, skipped
