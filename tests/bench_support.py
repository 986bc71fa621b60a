"""Helpers for the bench tests: bundles with real ONNX / ONNX Runtime INT8 artifacts.

Besides ``edgeft export`` itself (:func:`export_artifacts`), these plant artifacts a real
export would not make (a folded graph with another mean/std, a record with a wrong
contract) with the project's own exporter modules (:mod:`exporters.onnx_export`,
:mod:`exporters.ort_int8`), and export-time parity figures from
:func:`edgeft.parity.compare` on the bundle's validation split.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_parity(bundle, name: str) -> dict:
    """Export-time parity of artifact ``name`` vs PyTorch FP32 on the bundle's validation split."""
    from edgeft import formats
    from edgeft.labelled import load_labelled
    from edgeft.parity import bundle_valid_samples, compare, run_batches

    imgs = load_labelled(bundle_valid_samples(bundle), bundle.labels, bundle.preprocessing)
    with formats.make_runner("torch", bundle) as ref:
        ref_out = run_batches(ref, imgs.x)
    with formats.make_runner(name, bundle) as r:
        out = run_batches(r, imgs.x, 32, bundle.preprocessing)
    return compare(ref_out, out, imgs.targets, bundle.labels, "logits", imgs.paths)


def add_onnx(
    bundle_path: Path,
    name: str = "onnx",
    fold: tuple | None = None,
    record_pp: dict | None = None,
    parity: bool = True,
) -> dict:
    """Export the bundle's model to ONNX as artifact ``name``.

    Uses the project's exporter (:func:`exporters.onnx_export.export_onnx`: Conv-BN folded in
    float64, onnxslim, the contract stamped into the file's metadata) where present.

    Args:
        fold: ``(mean, std)`` to bake into the graph (normalisation folded in: input 0..1);
            other than the bundle's, this plants a wrong contract.
        record_pp: preprocessing fields to write into the artifact record.
    """
    from edgeft.bundle import Bundle
    from edgeft.preprocess import Preprocessing
    from edgeft.runners.torch_runner import load_torch_model
    from exporters import onnx_export

    bundle = Bundle.load(bundle_path)
    pp = bundle.preprocessing
    model = load_torch_model(bundle)
    fname = f"model.{name}.onnx"
    contract = pp
    if fold is not None:
        contract = Preprocessing.from_dict({**pp.to_dict(), "mean": fold[0], "std": fold[1]})
    build = onnx_export.export_onnx(
        model, contract, bundle.labels, bundle.path / fname, fold_normalize=fold is not None
    )
    record = {
        "path": fname,
        "format": "onnx",
        "precision": "fp32",
        "normalize_in_graph": fold is not None,
        "output": "logits",
        "sha256": _sha256(bundle.path / fname),
        "size_bytes": (bundle.path / fname).stat().st_size,
        "build": build,
    }
    if record_pp is not None:
        record["preprocessing"] = record_pp
    record_artifact(bundle_path, name, record)
    if parity:
        record["parity"] = export_parity(Bundle.load(bundle_path), name)
        record_artifact(bundle_path, name, record)
    return record


def export_artifacts(bundle_path: Path, **options) -> dict:
    """``edgeft export --onnx --int8`` through its library entry point (exporters.pipeline),
    falling back to :func:`add_onnx` / :func:`add_int8` where it is absent. Returns the records."""
    from exporters.pipeline import ExportOptions, export_bundle

    opts = ExportOptions(bundle=Path(bundle_path), onnx=True, int8=True, quiet=True, **options)
    return export_bundle(opts).records


def add_int8(bundle_path: Path, n_calib: int = 64) -> dict:
    """Static INT8 of the ``onnx`` artifact for ONNX Runtime's CPU kernels (Q/DQ, uint8
    activations, int8 per-channel weights), calibrated on real training images of the
    bundle's split; through :mod:`exporters.ort_int8` where present."""
    from edgeft.bundle import Bundle
    from edgeft.labelled import load_labelled
    from exporters import ort_int8

    bundle = Bundle.load(bundle_path)
    src = bundle.artifact_path("onnx")
    train = bundle.split()["train"]
    step = max(1, len(train) // n_calib)
    x = load_labelled(train[::step][:n_calib], bundle.labels, bundle.preprocessing).x
    dst = bundle.path / "model.int8.onnx"
    reduce = ort_int8.cpu_int8_info()["reduce_range"]
    build = ort_int8.quantize(src, dst, ort_int8.calibrate(src, x, "minmax"), "ort-cpu", reduce)
    build["calibration_images"] = int(len(x))
    record = {
        "path": dst.name,
        "format": "onnx",
        "precision": "int8",
        "normalize_in_graph": False,
        "output": "logits",
        "sha256": _sha256(dst),
        "size_bytes": dst.stat().st_size,
        "build": build,
    }
    record_artifact(bundle_path, "onnx-int8", record)
    record["parity"] = export_parity(Bundle.load(bundle_path), "onnx-int8")
    record_artifact(bundle_path, "onnx-int8", record)
    return record


def swapped_pp(bundle_path: Path) -> dict:
    """The bundle's preprocessing with mean and std swapped: the planted fault."""
    from edgeft.bundle import Bundle

    pp = Bundle.load(bundle_path).preprocessing.to_dict()
    pp["mean"], pp["std"] = pp["std"], pp["mean"]
    return pp


def set_onnx_preprocessing_metadata(bundle_path: Path, name: str, pp: dict) -> None:
    """Write ``pp`` as the ``edgeft.preprocessing`` metadata of artifact ``name``'s ONNX file
    (where ``edgeft export`` stamps the contract) and refresh the record's sha256."""

    import onnx

    from edgeft.bundle import Bundle

    bundle = Bundle.load(bundle_path)
    record = bundle.artifact(name).model_dump()
    path = bundle.path / record["path"]
    proto = onnx.load(str(path))
    for p in list(proto.metadata_props):
        if p.key == "edgeft.preprocessing":
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "edgeft.preprocessing", json.dumps(pp)
    onnx.save(proto, str(path))
    record.update(sha256=_sha256(path), size_bytes=path.stat().st_size)
    record_artifact(bundle_path, name, record)


def report_figures(report: dict) -> dict:
    """backend -> ladder figures, without timings."""
    return {r["backend"]: r["figures"] for r in report["ladder"]["rows"]}


def close(a, b, tol=1e-6) -> bool:
    return bool(np.isclose(a, b, atol=tol))


from tests.conftest import copy_bundle, record_artifact  # noqa: E402,F401  (re-exported)

_BUILT: dict[str, Path] = {}


def tiny_bench_bundle(tmp_path_factory) -> Path:
    """A small real bundle with onnx and onnx-int8 artifacts, built once per test session.

    MobileNetV2 with its real ImageNet weights, head-only training on colour-separable
    images at 32 px (100% validation accuracy, about 15 s), then ``edgeft export --onnx
    --int8`` (about 15 s; 12 validation images make one INT8 flip 8 points, so the export
    gate is set wide). Read-only: copy it before changing it.
    """
    if "tiny" not in _BUILT:
        from tests.conftest import MOBILENET_V2_WEIGHTS, tiny_bundle

        root = tmp_path_factory.mktemp("bench_tiny")
        out = tiny_bundle(
            root,
            n_per_class=20,
            pretrained=True,
            strategy="head",
            epochs=2,
            lr=1e-2,
            batch_size=16,
            weights=str(MOBILENET_V2_WEIGHTS),
        )
        export_artifacts(out, max_accuracy_drop=100.0, calib_count=32)
        _BUILT["tiny"] = out
    return _BUILT["tiny"]


# Tolerances that let the tiny model's INT8 rung pass: 12 validation images at 32 px make
# INT8 flip a few (a real bundle's INT8 rung is judged with the defaults in the slow tests).
LENIENT_INT8 = ["--tolerance", "int8.max_accuracy_drop=100", "--tolerance", "int8.min_agreement=0"]
