"""Builder configuration for :func:`exporters.tensorrt_build.build_engine`: TensorRT's logger,
network flags, the batch profile, DLA, the timing cache and the precision (builder flags
and the INT8 calibrator). Per-version notes are in :mod:`exporters.tensorrt_build`."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from pathlib import Path

from edgeft.platform.tensorrt import TensorRTBuildError, TRTInfo
from exporters.tensorrt_calib import make_entropy_calibrator, read_cache, rebatch

_log = logging.getLogger("exporters.tensorrt_build")


def make_logger(trt):
    class _Logger(trt.ILogger):
        """Sends TensorRT's messages to logging and keeps the errors for our message."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= 1:
                self.errors.append(msg)
                _log.error("TensorRT: %s", msg)
            elif level == 2:
                _log.warning("TensorRT: %s", msg)
            else:
                _log.debug("TensorRT: %s", msg)

    return _Logger()


def one_line(messages) -> str:
    lines = []
    for message in messages:
        for line in str(message).splitlines():
            line = " ".join(line.split())
            if line and line not in lines:
                lines.append(line)
    return " | ".join(lines)


def network_flags(trt, info: TRTInfo, mode: str) -> int:
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if info.flavour == "tensorrt" and info.major < 10:
        flags |= 1 << int(creation.EXPLICIT_BATCH)  # 8.x: ONNX needs explicit batch
    if mode == "strongly-typed":
        if not hasattr(creation, "STRONGLY_TYPED"):
            raise TensorRTBuildError(
                f"{info.label} cannot build strongly typed networks (TensorRT 10+ can): "
                "build an FP32 ONNX with --fp16 or --int8 builder flags instead"
            )
        if not (info.flavour == "tensorrt" and info.major >= 11):  # 11: always on, flag ignored
            flags |= 1 << int(creation.STRONGLY_TYPED)
    return flags


def summarize(trt, network) -> dict:
    dtypes: Counter = Counter()
    qdq = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE):
            qdq += 1
        for j in range(layer.num_outputs):
            dtypes[layer.get_output(j).dtype.name] += 1
    return {
        "layers": network.num_layers,
        "qdq_layers": qdq,
        "tensor_dtypes": dict(sorted(dtypes.items())),
    }


def check_batches(min_batch, opt_batch, max_batch, input_shape):
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise TensorRTBuildError(
            f"batch profile must satisfy 1 <= min <= opt <= max; got {min_batch}/{opt_batch}/{max_batch}"
        )
    if any(d < 0 for d in input_shape[1:]):
        raise TensorRTBuildError(
            f"input shape {tuple(input_shape)} has a dynamic image dimension: export the ONNX with a fixed size"
        )
    fixed = input_shape[0]
    if fixed >= 0 and (min_batch, opt_batch, max_batch) != (fixed,) * 3:
        raise TensorRTBuildError(
            f"the ONNX has a fixed batch of {fixed}: export it with a dynamic batch axis, "
            f"or build with min = opt = max = {fixed}"
        )


def set_dla(trt, builder, config, dla_core, min_batch, max_batch):
    if dla_core is None:
        return None
    cores = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if cores < 1:
        raise TensorRTBuildError(
            f"DLA core {dla_core} requested but this device has no DLA "
            "(Jetson Xavier and Orin modules have DLA cores, except Orin Nano)"
        )
    if not 0 <= dla_core < cores:
        raise TensorRTBuildError(
            f"DLA core {dla_core} does not exist: this device has {cores} (0-{cores - 1})"
        )
    if min_batch != max_batch:
        raise TensorRTBuildError(
            "DLA does not support dynamic dimensions: build with min = opt = max batch"
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU
    return {"core": int(dla_core), "gpu_fallback": True, "cores_available": cores}


def open_timing_cache(info, config, path):
    if path is None:
        return None, None
    path = Path(path)
    if info.flavour == "tensorrt_rtx":
        return {"path": str(path), "used": False, "note": "no-op in TensorRT-RTX"}, None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    record = {"path": str(path), "used": True, "loaded_bytes": len(data)}
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another GPU or TensorRT version: start afresh rather than mix.
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        record.update(loaded_bytes=0, note="existing cache did not match this device; replaced")
    return record, path


def set_precision(trt, info, builder, config, mode, chw, name, summary, calib):
    """Set builder flags and the calibrator; returns (precision record, calibrator or None)."""
    if mode == "strongly-typed":
        return {"precision": "from-onnx"}, None
    flag = trt.BuilderFlag
    if not hasattr(flag, "FP16") or (mode == "int8-flags" and not hasattr(flag, "INT8")):
        raise TensorRTBuildError(
            f"{info.label} has no FP16/INT8 builder flags (TensorRT 11 removed them; TensorRT-RTX "
            "never had them): build from an FP16 or Q/DQ INT8 ONNX with the strongly typed path"
        )
    config.set_flag(flag.FP16)
    if mode == "fp16-flags":
        return {"precision": "fp16"}, None
    config.set_flag(flag.INT8)  # FP16 stays on: layers without INT8 kernels fall back to it
    if summary["qdq_layers"]:
        return {"precision": "int8", "quantization": "explicit Q/DQ from the ONNX"}, None
    batches, cache, key = calib
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise TensorRTBuildError(f"{info.label} has no INT8 calibrator: use a Q/DQ ONNX")
    cache = Path(cache) if cache is not None else None
    reuse = read_cache(cache, key) is not None
    if reuse:
        batches, shape = None, (1, *chw)
    elif batches is None:
        raise TensorRTBuildError(
            "INT8 with builder flags needs calibration images, or a calibration cache made "
            "for this model and preprocessing"
        )
    else:
        stream = rebatch(batches, chw)
        try:
            first = next(stream, None)
        except ValueError as exc:
            raise TensorRTBuildError(f"calibration data: {exc}") from exc
        if first is None:
            raise TensorRTBuildError("the calibration set is empty")
        batches, shape = itertools.chain([first], stream), tuple(first.shape)
    calibrator = make_entropy_calibrator(trt, batches, cache, key)
    config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()
    profile.set_shape(name, shape, shape, shape)  # calibration runs at one fixed shape
    config.set_calibration_profile(profile)
    record = {"precision": "int8", "quantization": "entropy calibration (IInt8EntropyCalibrator2)"}
    record["calibration"] = {
        "cache": str(cache) if cache else None,
        "key": key,
        "reused_cache": reuse,
    }
    record["calibration"]["batch_shape"] = list(shape)
    return record, calibrator
