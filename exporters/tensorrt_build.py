"""Build a TensorRT engine -- a plain plan file -- from an ONNX file, on the device that runs it.

``mode`` picks how reduced precision reaches the engine:

* ``"fp16-flags"``, ``"int8-flags"``: implicit precision. An FP32 ONNX plus
  ``BuilderFlag.FP16`` (and ``INT8`` with an ``IInt8EntropyCalibrator2``, FP16 kept as the
  fallback for layers without INT8 kernels). A Q/DQ ONNX under ``int8-flags`` is TensorRT
  8.x's explicit quantization and needs no calibrator. TensorRT 8.5/8.6 (JetPack 5, 6.0)
  and 10.x (JetPack 6.1/6.2); TensorRT 11 and TensorRT-RTX removed these flags.
* ``"strongly-typed"``: the ONNX carries its precision (FP16 casts from
  :func:`exporters.onnx_fp16.to_fp16`, or a Q/DQ model with symmetric signed INT8 scales).
  TensorRT 10.x can, TensorRT 11 and TensorRT-RTX must build this way.

Per-version API, following NVIDIA's docs
(https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/ for 8.x->10.x and
10.x->11.x; https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/ for RTX):

* ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is required for ONNX in 8.x, deprecated
  and ignored in 10.0, absent from RTX; ``STRONGLY_TYPED`` exists from 10.0 (and RTX) and
  is deprecated in 11, where every network is strongly typed.
* Workspace: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`` since 8.4;
  ``max_workspace_size`` (deprecated in 8.4, removed in 10) only where that is missing.
* ``build_serialized_network`` since 8.0; ``build_engine`` (removed in 10) as a fallback.
* Timing cache: ``create_timing_cache`` / ``set_timing_cache`` / ``get_timing_cache``
  since 8.0; TensorRT-RTX keeps them as no-ops (deprecated in RTX 1.2), so they are skipped.
* DLA: ``default_device_type = DeviceType.DLA``, ``DLA_core``, ``BuilderFlag.GPU_FALLBACK``;
  DLA takes no dynamic dimensions, so it needs min = opt = max.
* INT8 calibration with a dynamic batch needs ``set_calibration_profile`` (8.x/10.x;
  removed in 11 with the calibrators, deprecated since 10.1).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from pathlib import Path

from edgeft.atomic import sha256_file, write_bytes_atomic
from edgeft.platform.gpu import describe_device
from edgeft.platform.tensorrt import (
    INSTALL_HINT,
    EngineMismatch,
    TensorRTBuildError,
    TensorRTUnavailable,
    TRTInfo,
    check_engine_compatible,
    load_trt,
    trt_info,
)
from exporters.tensorrt_calib import make_entropy_calibrator, read_cache, rebatch

__all__ = [
    "MODES",
    "EngineMismatch",
    "TRTInfo",
    "TensorRTBuildError",
    "TensorRTUnavailable",
    "build_engine",
    "check_engine_compatible",
    "INSTALL_HINT",
    "describe_device",
    "load_trt",
    "trt_info",
]

MODES = ("fp16-flags", "int8-flags", "strongly-typed")
_log = logging.getLogger(__name__)


def _make_logger(trt):
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


def _one_line(messages) -> str:
    lines = []
    for message in messages:
        for line in str(message).splitlines():
            line = " ".join(line.split())
            if line and line not in lines:
                lines.append(line)
    return " | ".join(lines)


def _network_flags(trt, info: TRTInfo, mode: str) -> int:
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


def _summarize(trt, network) -> dict:
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


def _check_batches(min_batch, opt_batch, max_batch, input_shape):
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


def _set_dla(trt, builder, config, dla_core, min_batch, max_batch):
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


def _open_timing_cache(info, config, path):
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


def _set_precision(trt, info, builder, config, mode, chw, name, summary, calib):
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


def build_engine(
    onnx_path,
    engine_path,
    *,
    mode: str,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 1,
    workspace_mib: int | None = None,
    timing_cache=None,
    dla_core: int | None = None,
    calib_batches=None,
    calib_cache=None,
    calib_key: str | None = None,
    trt=None,
) -> dict:
    """Parse ``onnx_path``, build an engine and write it to ``engine_path`` (atomically).

    Args:
        mode: one of :data:`MODES` (see the module docstring).
        min_batch, opt_batch, max_batch: the optimization profile of the batch axis.
        workspace_mib: builder workspace limit; None keeps TensorRT's default.
        timing_cache: a file to read tactic timings from and write them back to.
        dla_core: run on this DLA core, layers DLA cannot run falling back to the GPU.
        calib_batches: ``int8-flags`` only: an iterable of float32 NCHW numpy arrays,
            preprocessed exactly as at inference.
        calib_cache: ``int8-flags`` only: TensorRT's calibration cache file.
        calib_key: :func:`exporters.tensorrt_calib.calibration_cache_key`; a cache written
            for another key is ignored and rewritten.
        trt: an imported ``tensorrt``/``tensorrt_rtx`` module; None loads one.

    Returns:
        The engine record: TensorRT flavour and version, mode, precision, profile,
        workspace, DLA, timing cache, calibration, network summary, device (GPU name and
        compute capability or why none, Jetson L4T), engine size and sha256, build seconds.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise TensorRTBuildError(f"ONNX file not found: {onnx_path}")
    module, info = (trt, trt_info(trt)) if trt is not None else load_trt()
    start = time.perf_counter()
    logger = _make_logger(module)
    try:
        builder = module.Builder(logger)
    except Exception as exc:  # TensorRT (not RTX) needs a working CUDA GPU even to build
        raise TensorRTBuildError(
            f"{info.label} could not create a builder ({_one_line([exc, *logger.errors])}): "
            "building an engine needs the target's CUDA GPU and driver"
        ) from exc
    network = builder.create_network(_network_flags(module, info, mode))
    parser = module.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)] or logger.errors
        raise TensorRTBuildError(f"{info.label} could not parse {onnx_path}: {_one_line(errors)}")
    if network.num_inputs == 0 and network.num_outputs == 0:
        # Bytes that are not ONNX at all can decode as an empty protobuf, which parses "fine".
        raise TensorRTBuildError(
            f"{info.label} could not parse {onnx_path}: it holds no graph (not an ONNX model?)"
        )
    if network.num_inputs != 1:
        raise TensorRTBuildError(
            f"expected a classifier with one input, found {network.num_inputs}"
        )
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    _check_batches(min_batch, opt_batch, max_batch, shape)
    chw = tuple(int(d) for d in shape[1:])
    summary = _summarize(module, network)
    warnings = []
    if mode == "strongly-typed" and not {"HALF", "INT8"} & set(summary["tensor_dtypes"]):
        warnings.append("strongly typed network has no FP16 or INT8 tensors: the engine is FP32")

    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    dims = {k: (b, *chw) for k, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}
    profile.set_shape(inp.name, dims["min"], dims["opt"], dims["max"])
    config.add_optimization_profile(profile)
    if workspace_mib is not None:
        if hasattr(config, "set_memory_pool_limit"):  # 8.4+
            config.set_memory_pool_limit(module.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
        else:  # before 8.4; removed in 10
            config.max_workspace_size = int(workspace_mib) << 20
    calib = (calib_batches, calib_cache, calib_key)
    precision, calibrator = _set_precision(
        module, info, builder, config, mode, chw, inp.name, summary, calib
    )
    dla = _set_dla(module, builder, config, dla_core, min_batch, max_batch)
    cache_record, cache_path = _open_timing_cache(info, config, timing_cache)

    try:
        if hasattr(builder, "build_serialized_network"):  # 8.0+
            plan = builder.build_serialized_network(network, config)
        else:  # 7.x; build_engine was removed in 10.0
            engine = builder.build_engine(network, config)
            plan = engine.serialize() if engine is not None else None
    finally:
        if calibrator is not None:
            calibrator.free()
    if calibrator is not None and calibrator.error is not None:
        raise TensorRTBuildError(
            f"INT8 calibration failed: {calibrator.error}"
        ) from calibrator.error
    if plan is None:
        raise TensorRTBuildError(
            f"{info.label} could not build the engine: {_one_line(logger.errors)}"
        )
    if calibrator is not None:
        precision["calibration"].update(
            batches=calibrator.batches,
            images=calibrator.images,
            cache_written=calibrator.cache_written,
            device_buffers=calibrator.backend,
        )
    if cache_path is not None:
        write_bytes_atomic(
            cache_path, memoryview(config.get_timing_cache().serialize()), fsync=True
        )
    write_bytes_atomic(engine_path, memoryview(plan), fsync=True)
    seconds = time.perf_counter() - start
    record = {
        "format": "tensorrt-plan",
        "tensorrt": info.as_dict(),
        "mode": mode,
        **precision,
        "onnx": {"path": str(onnx_path), "sha256": sha256_file(onnx_path)},
        "input": {"name": inp.name, "shape": list(shape), "dtype": inp.dtype.name},
        "profile": {k: list(v) for k, v in dims.items()},
        "workspace_mib": workspace_mib,
        "dla": dla,
        "timing_cache": cache_record,
        "network": summary,
        "device": describe_device(),
        "engine": {"path": str(engine_path), "bytes": engine_path.stat().st_size},
        "build_seconds": round(seconds, 3),
        "warnings": warnings,
    }
    record["engine"]["sha256"] = sha256_file(engine_path)
    if info.flavour == "tensorrt_rtx":
        # RTX engines are portable across its default compute capabilities unless targeted.
        n = getattr(config, "num_compute_capabilities", 0)
        record["tensorrt"]["compute_capabilities"] = (
            [config.get_compute_capability(i).name for i in range(n)] if n else "default"
        )
    return record
