"""Helpers for the bench tests: bundles with real ONNX / ONNX Runtime INT8 artifacts.

Until ``edgeft export`` (edgeft/export.py) exists, these write artifact records by the
convention in the brief with the project's own exporter modules
(:mod:`exporters.onnx_export`, :mod:`exporters.ort_int8`; a plain torch.onnx.export and
``quantize_static`` where those are absent), and export-time parity figures from
:func:`edgeft.parity.compare` on the bundle's validation split.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _export_torch(module, pp, path: Path) -> None:
    import torch

    dummy = torch.zeros(1, 3, *pp.size)
    torch.onnx.export(
        module.eval(),
        dummy,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def export_parity(bundle, name: str) -> dict:
    """Export-time parity of artifact ``name`` vs PyTorch FP32 on the bundle's validation split."""
    from edgeft.parity import bundle_valid_samples, compare, load_labelled, run_batches
    from edgeft.runners import get_runner
    from edgeft.runners.torch_runner import TorchRunner

    imgs = load_labelled(bundle_valid_samples(bundle), bundle.labels, bundle.preprocessing)
    with TorchRunner(bundle) as ref:
        ref_out = run_batches(ref, imgs.x)
    kwargs = {"artifact": name} if name == "onnx-folded" else {}
    with get_runner("onnx" if name == "onnx-folded" else name, bundle, **kwargs) as r:
        out = run_batches(r, imgs.x, 32, bundle.preprocessing)
    return compare(ref_out, out, imgs.targets, bundle.labels, "logits", imgs.paths)


def _exporters():
    """The project's exporter modules where present (exporters/onnx_export.py, ort_int8.py)."""
    try:
        from exporters import onnx_export, ort_int8

        return onnx_export, ort_int8
    except ImportError:
        return None, None


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
    import torch

    from edgeft.bundle import Bundle
    from edgeft.preprocess import Preprocessing
    from edgeft.runners.torch_runner import load_torch_model

    bundle = Bundle.load(bundle_path)
    pp = bundle.preprocessing
    model = load_torch_model(bundle)
    fname = f"model.{name}.onnx"
    onnx_export, _ = _exporters()
    build = {"opset": 17, "dynamo": False}
    if onnx_export is not None:
        contract = pp
        if fold is not None:
            contract = Preprocessing.from_dict({**pp.to_dict(), "mean": fold[0], "std": fold[1]})
        build = onnx_export.export_onnx(
            model, contract, bundle.labels, bundle.path / fname, fold_normalize=fold is not None
        )
    else:
        if fold is not None:
            mean = torch.tensor(fold[0], dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(fold[1], dtype=torch.float32).view(1, 3, 1, 1)

            class Folded(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.model = model

                def forward(self, x):
                    return self.model((x - mean) / std)

            model = Folded()
        _export_torch(model, pp, bundle.path / fname)
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
    bundle.add_artifact(name, record)
    if parity:
        record["parity"] = export_parity(Bundle.load(bundle_path), name)
        bundle.add_artifact(name, record)
    return record


def export_artifacts(bundle_path: Path, **options) -> dict:
    """``edgeft export --onnx --int8`` through its library entry point (edgeft.export),
    falling back to :func:`add_onnx` / :func:`add_int8` where it is absent. Returns the records."""
    try:
        from edgeft.export import ExportOptions, export_bundle
    except ImportError:
        add_onnx(bundle_path)
        add_int8(bundle_path, n_calib=options.get("calib_count", 64))
        return json.loads((Path(bundle_path) / "bundle.json").read_text())["artifacts"]
    opts = ExportOptions(bundle=Path(bundle_path), onnx=True, int8=True, quiet=True, **options)
    return export_bundle(opts).records


def add_int8(bundle_path: Path, n_calib: int = 64) -> dict:
    """Static INT8 of the ``onnx`` artifact for ONNX Runtime's CPU kernels (Q/DQ, uint8
    activations, int8 per-channel weights), calibrated on real training images of the
    bundle's split; through :mod:`exporters.ort_int8` where present."""
    from edgeft.bundle import Bundle
    from edgeft.parity import load_labelled

    bundle = Bundle.load(bundle_path)
    src = bundle.path / bundle.artifact("onnx")["path"]
    train = bundle.split()["train"]
    step = max(1, len(train) // n_calib)
    x = load_labelled(train[::step][:n_calib], bundle.labels, bundle.preprocessing).x
    dst = bundle.path / "model.int8.onnx"
    _, ort_int8 = _exporters()
    if ort_int8 is not None:
        reduce = ort_int8.cpu_int8_info()["reduce_range"]
        build = ort_int8.quantize(src, dst, ort_int8.calibrate(src, x, "minmax"), "ort-cpu", reduce)
    else:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"input": x[i : i + 1]} for i in range(len(x))])

            def get_next(self):
                return next(self.it, None)

        # reduce_range (7-bit weights): x86 CPUs without VNNI saturate int16 sums otherwise.
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        build = {"format": "QDQ", "activations": "uint8"}
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
    bundle.add_artifact("onnx-int8", record)
    record["parity"] = export_parity(Bundle.load(bundle_path), "onnx-int8")
    bundle.add_artifact("onnx-int8", record)
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
    import json

    import onnx

    from edgeft.bundle import Bundle

    bundle = Bundle.load(bundle_path)
    record = bundle.artifact(name)
    path = bundle.path / record["path"]
    proto = onnx.load(str(path))
    for p in list(proto.metadata_props):
        if p.key == "edgeft.preprocessing":
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "edgeft.preprocessing", json.dumps(pp)
    onnx.save(proto, str(path))
    record.update(sha256=_sha256(path), size_bytes=path.stat().st_size)
    bundle.add_artifact(name, record)


def report_figures(report: dict) -> dict:
    """backend -> ladder figures, without timings."""
    return {r["backend"]: r["figures"] for r in report["ladder"]["rows"]}


def close(a, b, tol=1e-6) -> bool:
    return bool(np.isclose(a, b, atol=tol))


from tests.conftest import copy_bundle  # noqa: E402,F401  (re-exported for the bench tests)

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
