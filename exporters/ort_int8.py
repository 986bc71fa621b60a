"""Static INT8 quantization with ONNX Runtime: calibration, Q/DQ files per target, and a
look at the graph ONNX Runtime actually runs.

Two Q/DQ recipes from one calibration (the ranges are shared, the files are not):

* ``ort-cpu`` -- what ONNX Runtime's CPU kernels run fast: uint8 activations (asymmetric),
  int8 per-channel symmetric weights. After graph optimisation every Conv becomes a
  QLinearConv (checked with :func:`ort_graph_summary`); signed activations instead left
  Convs and residual Adds in float with transposes around them (see ENVIRONMENT.md).
* ``tensorrt`` -- what TensorRT's explicit quantization takes: symmetric signed int8 for
  activations and weights, per-channel weights, and no int32 bias Q/DQ
  (``QuantizeBias: False``; the parser rejects int32 DequantizeLinear).

Calibration runs ONNX Runtime's calibrators directly (``create_calibrator``): through
``quantize_static`` the Entropy method uses 128 histogram bins for 128 quantized bins,
which picks the full range, i.e. MinMax (ENVIRONMENT.md: byte-identical files). Here
Entropy and Percentile get 2048 bins. The ranges then reach ``quantize_static`` as
``TensorQuantOverrides`` (rmin/rmax per tensor), which works with every ONNX Runtime
since 1.17 and gave a file byte-identical to ``quantize_static``'s own MinMax pass.

``reduce_range`` (7-bit weights): x86-64 CPUs without VNNI multiply uint8 x int8 with
``vpmaddubsw``, whose int16 sums saturate (OpenVINO documents the same issue:
https://docs.openvino.ai/latest/pot_saturation_issue.html). Measured here (AVX2, no VNNI)
on the EuroSAT MobileNetV2: the same Q/DQ file lost 2.5 points more accuracy once ONNX
Runtime fused it into QLinearConv; 7-bit weights gave that back. :func:`cpu_int8_info`
decides it for the exporting machine.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgeft.errors import UserError
from edgeft.platform.cpu import cpu_int8_info  # noqa: F401  (re-exported)
from exporters.options import CALIB_METHODS

TARGETS = ("ort-cpu", "tensorrt")
HIST_BINS = 2048
CALIB_CHUNK = 32
PERCENTILE = 99.999


def _quiet_ort():
    logging.getLogger("root").setLevel(logging.ERROR)
    return contextlib.redirect_stdout(io.StringIO())


class _Reader:
    """A CalibrationDataReader over an in-memory float32 batch array."""

    def __init__(self, name: str, x: np.ndarray, batch: int):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        out = {self.name: np.ascontiguousarray(self.x[self.i : self.i + self.batch])}
        self.i += self.batch
        return out

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def set_range(self, start_index: int, end_index: int):  # part of the reader protocol
        self.i = start_index

    def rewind(self):
        self.i = 0


def _equal_batch(n: int, cap: int = 16) -> int:
    # Histogram calibrators stack per-batch outputs, so every batch must have one size.
    return max(d for d in range(1, min(cap, n) + 1) if n % d == 0)


def input_name(model_path) -> str:
    import onnx

    return onnx.load(str(model_path), load_external_data=False).graph.input[0].name


def calibrate(
    model_path, x: np.ndarray, method: str = "minmax", workdir=None, chunk: int = CALIB_CHUNK
) -> dict[str, list[float]]:
    """Activation ranges ``{tensor: [min, max]}`` of an FP32 ONNX model over inputs ``x``.

    Args:
        model_path: the FP32 ONNX file.
        x: float32 NCHW inputs exactly as the model takes them.
        method: ``minmax`` (observed extremes), ``entropy`` (KL-optimal clipping of a
            2048-bin histogram to 128 levels, TensorRT's method) or ``percentile``
            (99.999th percentile of |x| on each side).
        workdir: a private folder for the calibrator's files (default: a system temp folder).
            ONNX Runtime writes a shape-inferred copy next to the model it is given
            (``<name>-inferred.onnx``), so the model is copied into a private folder first:
            two exports of one bundle never share that name, and a killed calibration
            leaves nothing next to the bundle's files.
        chunk: images per ``collect_data`` call. The calibrator holds every intermediate
            tensor of the images of one call (200 images at 128 px: 4.3 GB); across calls
            it keeps only running extremes or merged histograms (same bin width, the range
            grown as needed), so chunks bound the memory: MinMax ranges are identical and
            Percentile's within a bin or two (Entropy still takes one call).
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    if method not in CALIB_METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, not {method!r}")
    kind, extra = {
        "minmax": (CalibrationMethod.MinMax, {}),
        "entropy": (CalibrationMethod.Entropy, {"num_bins": HIST_BINS, "num_quantized_bins": 128}),
        "percentile": (
            CalibrationMethod.Percentile,
            {"num_bins": HIST_BINS, "percentile": PERCENTILE, "symmetric": False},
        ),
    }[method]
    batch = 16 if method == "minmax" else _equal_batch(len(x))
    with tempfile.TemporaryDirectory(prefix="edgeft-calib-", dir=workdir) as tmp, _quiet_ort():
        private = Path(tmp) / "model.onnx"
        shutil.copyfile(model_path, private)
        calibrator = create_calibrator(
            private,
            None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=kind,
            extra_options=extra,
        )
        name, step = input_name(model_path), batch * max(1, chunk // batch)
        if method == "entropy":
            # Its KL search runs over the histogram's bins, and a merged histogram has more
            # of them: chunks moved one tensor's range by 78% in a check (percentile: within a bin).
            step = len(x)
        for i in range(0, len(x), step):  # each chunk a whole number of equal batches
            calibrator.collect_data(_Reader(name, x[i : i + step].astype(np.float32), batch))
        data = calibrator.compute_data()
        del calibrator
    out = {}
    for name, td in data.items():
        lo, hi = (float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) for v in td.range_value)
        out[name] = [lo, hi]
    return out


def recipe(target: str, reduce_range: bool = False) -> dict:
    """The quantization settings of ``target`` (see the module docstring), JSON-able."""
    if target == "ort-cpu":
        return {
            "target": target,
            "format": "QDQ",
            "activations": "uint8 asymmetric",
            "weights": "int8 symmetric per-channel",
            "reduce_range": bool(reduce_range),
            "quantize_bias": True,
        }
    if target == "tensorrt":
        return {
            "target": target,
            "format": "QDQ",
            "activations": "int8 symmetric",
            "weights": "int8 symmetric per-channel",
            "reduce_range": False,
            "quantize_bias": False,
        }
    raise ValueError(f"target must be one of {TARGETS}")


def quantize(
    model_path,
    out_path,
    ranges: dict,
    target: str = "ort-cpu",
    reduce_range: bool = False,
    exclude_ops=("Softmax",),
) -> dict:
    """Write a Q/DQ model of ``model_path`` for ``target`` using calibrated ``ranges``.

    Returns:
        :func:`recipe` plus the number of Q/DQ nodes written.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    rec = recipe(target, reduce_range)
    model = onnx.load(str(model_path))
    exclude = [n.name for n in model.graph.node if n.op_type in exclude_ops]
    overrides = {
        k: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for k, (lo, hi) in ranges.items()
    }
    extra = {"TensorQuantOverrides": overrides}
    if target == "ort-cpu":
        act = QuantType.QUInt8
    else:
        act = QuantType.QInt8
        extra.update(ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
    # The overrides carry every range; quantize_static's own pass over one input is cheap
    # and its results are replaced.
    first = next(iter(ranges.values()), None)
    if first is None:
        raise UserError("calibration produced no activation ranges")
    reader = _OneInput(model)
    with _quiet_ort():
        quantize_static(
            str(model_path),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=rec["reduce_range"],
            activation_type=act,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            extra_options=extra,
        )
    q = onnx.load(str(out_path), load_external_data=False)
    counts = Counter(n.op_type for n in q.graph.node)
    rec["qdq_nodes"] = {
        "QuantizeLinear": counts["QuantizeLinear"],
        "DequantizeLinear": counts["DequantizeLinear"],
    }
    return rec


class _OneInput(_Reader):
    """One zero input of the model's shape: quantize_static insists on a reader."""

    def __init__(self, model):
        inp = model.graph.input[0]
        dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        super().__init__(inp.name, np.zeros(dims, np.float32), 1)


def ort_graph_summary(model_path, threads: int = 1) -> dict:
    """What ONNX Runtime's CPU provider runs after graph optimisation: op counts of the
    optimised graph, and how many convolutions were fused into QLinearConv."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeft-ortopt-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        g = onnx.load(so.optimized_model_filepath, load_external_data=False)
    ops = Counter(n.op_type for n in g.graph.node)
    float_conv = sum(ops[k] for k in ("Conv", "FusedConv", "NhwcFusedConv") if k in ops)
    return {
        "ops": dict(sorted(ops.items())),
        "qlinear_conv": ops.get("QLinearConv", 0),
        "float_conv": float_conv,
        "transposes": ops.get("Transpose", 0),
        "onnxruntime": ort.__version__,
    }
