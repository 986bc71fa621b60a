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
* Workspace: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`` (8.4+).
* ``build_serialized_network`` (8.0+). Nothing older than the TensorRT 8.5 that
  ``pyproject.toml`` requires is supported, so no pre-8.5 branch is kept.
* Timing cache: ``create_timing_cache`` / ``set_timing_cache`` / ``get_timing_cache``
  since 8.0; TensorRT-RTX keeps them as no-ops (deprecated in RTX 1.2), so they are skipped.
* DLA: ``default_device_type = DeviceType.DLA``, ``DLA_core``, ``BuilderFlag.GPU_FALLBACK``;
  DLA takes no dynamic dimensions, so it needs min = opt = max.
* INT8 calibration with a dynamic batch needs ``set_calibration_profile`` (8.x/10.x;
  removed in 11 with the calibrators, deprecated since 10.1).
"""

from __future__ import annotations

import time
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
from exporters.tensorrt_config import (
    check_batches,
    make_logger,
    network_flags,
    one_line,
    open_timing_cache,
    set_dla,
    set_precision,
    summarize,
)

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


def _parse(module, info, onnx_path: Path, mode: str, logger):
    """Builder and network from the ONNX file; one line for each way it can fail."""
    try:
        builder = module.Builder(logger)
    except Exception as exc:  # TensorRT (not RTX) needs a working CUDA GPU even to build
        raise TensorRTBuildError(
            f"{info.label} could not create a builder ({one_line([exc, *logger.errors])}): "
            "building an engine needs the target's CUDA GPU and driver"
        ) from exc
    network = builder.create_network(network_flags(module, info, mode))
    parser = module.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)] or logger.errors
        raise TensorRTBuildError(f"{info.label} could not parse {onnx_path}: {one_line(errors)}")
    if network.num_inputs == 0 and network.num_outputs == 0:
        # Bytes that are not ONNX at all can decode as an empty protobuf, which parses "fine".
        raise TensorRTBuildError(
            f"{info.label} could not parse {onnx_path}: it holds no graph (not an ONNX model?)"
        )
    if network.num_inputs != 1:
        raise TensorRTBuildError(
            f"expected a classifier with one input, found {network.num_inputs}"
        )
    return builder, network, parser


def _serialize(builder, network, config, calibrator, precision, logger, info):
    """The plan bytes; a calibrator's error (kept while TensorRT called back) re-raised."""
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if calibrator is not None and calibrator.error is not None:
        raise TensorRTBuildError(
            f"INT8 calibration failed: {calibrator.error}"
        ) from calibrator.error
    if plan is None:
        raise TensorRTBuildError(
            f"{info.label} could not build the engine: {one_line(logger.errors)}"
        )
    if calibrator is not None:
        precision["calibration"].update(
            batches=calibrator.batches,
            images=calibrator.images,
            cache_written=calibrator.cache_written,
            device_buffers=calibrator.backend,
        )
    return plan


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
        calib_batches, calib_cache, calib_key: ``int8-flags`` only: float32 NCHW batches,
            TensorRT's cache file and its key (:mod:`exporters.tensorrt_calib`).
        trt: an imported ``tensorrt``/``tensorrt_rtx`` module; None loads one.

    Returns:
        The engine record (TensorRT, mode, precision, profile, DLA, caches, device, engine).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise TensorRTBuildError(f"ONNX file not found: {onnx_path}")
    module, info = (trt, trt_info(trt)) if trt is not None else load_trt()
    start, logger = time.perf_counter(), make_logger(module)
    builder, network, _parser = _parse(module, info, onnx_path, mode, logger)
    inp = network.get_input(0)
    check_batches(min_batch, opt_batch, max_batch, tuple(inp.shape))
    chw = tuple(int(d) for d in tuple(inp.shape)[1:])
    summary = summarize(module, network)
    dims = {k: (b, *chw) for k, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}
    config = _config(module, builder, inp.name, dims, workspace_mib)
    calib = (calib_batches, calib_cache, calib_key)
    precision, calibrator = set_precision(
        module, info, builder, config, mode, chw, inp.name, summary, calib
    )
    dla = set_dla(module, builder, config, dla_core, min_batch, max_batch)
    cache_record, cache_path = open_timing_cache(info, config, timing_cache)
    plan = _serialize(builder, network, config, calibrator, precision, logger, info)
    if cache_path is not None:
        cache_bytes = memoryview(config.get_timing_cache().serialize())
        write_bytes_atomic(cache_path, cache_bytes, fsync=True)
    write_bytes_atomic(engine_path, memoryview(plan), fsync=True)
    extra = {"workspace_mib": workspace_mib, "dla": dla, "timing_cache": cache_record}
    return _record(
        info, mode, precision, onnx_path, inp, dims, summary, engine_path, config, extra, start
    )


def _record(
    info, mode, precision, onnx_path, inp, dims, summary, engine_path, config, extra, start
):
    record = {
        "format": "tensorrt-plan",
        "tensorrt": info.as_dict(),
        "mode": mode,
        **precision,
        "onnx": {"path": str(onnx_path), "sha256": sha256_file(onnx_path)},
        "input": {"name": inp.name, "shape": list(inp.shape), "dtype": inp.dtype.name},
        "profile": {k: list(v) for k, v in dims.items()},
        **extra,
        "network": summary,
        "device": describe_device(),
        "engine": _engine_file(engine_path),
        "build_seconds": round(time.perf_counter() - start, 3),
        "warnings": _warnings(mode, summary),
    }
    if info.flavour == "tensorrt_rtx":
        # RTX engines are portable across its default compute capabilities unless targeted.
        n = getattr(config, "num_compute_capabilities", 0)
        caps = [config.get_compute_capability(i).name for i in range(n)] if n else "default"
        record["tensorrt"]["compute_capabilities"] = caps
    return record


def _config(module, builder, input_name: str, dims: dict, workspace_mib: int | None):
    """A builder config with the batch profile and the workspace limit."""
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, dims["min"], dims["opt"], dims["max"])
    config.add_optimization_profile(profile)
    if workspace_mib is not None:
        config.set_memory_pool_limit(module.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    return config


def _engine_file(path: Path) -> dict:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _warnings(mode: str, summary: dict) -> list[str]:
    if mode == "strongly-typed" and not {"HALF", "INT8"} & set(summary["tensor_dtypes"]):
        return ["strongly typed network has no FP16 or INT8 tensors: the engine is FP32"]
    return []
