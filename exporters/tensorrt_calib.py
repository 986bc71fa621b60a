"""INT8 entropy calibration for TensorRT 8.5-10.x, and its cache keyed to model + preprocessing.

TensorRT 8.5/8.6 (JetPack 5) and 10.x (JetPack 6.1/6.2) pick INT8 scales themselves when
the builder has ``BuilderFlag.INT8`` and an ``IInt8EntropyCalibrator2`` that hands it
batches in GPU memory. The calibrator classes are deprecated since TensorRT 10.1 and gone
in 11, where a Q/DQ ONNX carries the scales instead (the strongly typed path).

Device buffers come from the first of these that imports (what Jetson users have):

* ``cuda-python`` -- what NVIDIA's TensorRT 10 Python samples use; ``pip install
  cuda-python`` matching the CUDA major of JetPack (12 on JetPack 6).
* ``pycuda`` -- what the TensorRT 8.x samples and most JetPack 5 guides use; it compiles
  against JetPack's CUDA on ``pip install pycuda``.
* ``torch.cuda`` -- NVIDIA's PyTorch wheels for Jetson.

The calibration cache is TensorRT's own file (it starts ``TRT-<version>-EntropyCalibration2``).
A JSON side file holds the key it was made for -- ONNX file, preprocessing, calibration
data, TensorRT version -- and a cache whose key differs is never read: stale scales would
silently cost accuracy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from edgeft.atomic import write_bytes_atomic
from edgeft.platform.cudamem import cuda_memory


def calibration_cache_key(
    onnx_sha256: str,
    preprocessing: Mapping,
    trt_version: str,
    data_fingerprint: str | None = None,
) -> str:
    """A short hex key naming one calibration: model, preprocessing, data, TensorRT major.minor.

    Args:
        onnx_sha256: sha256 of the FP32 ONNX file being calibrated.
        preprocessing: the bundle's preprocessing block (resize, mean/std, ...): JSON-able.
        trt_version: TensorRT version string; only major.minor enter the key.
        data_fingerprint: something that changes when the calibration images change.
    """
    payload = {
        "algo": "EntropyCalibration2",
        "onnx": onnx_sha256,
        "preprocessing": preprocessing,
        "tensorrt": ".".join(trt_version.split(".")[:2]),
        "data": data_fingerprint,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _key_file(cache: Path) -> Path:
    return cache.with_name(cache.name + ".key.json")


def read_cache(cache: Path | None, key: str | None) -> bytes | None:
    """The cache's bytes if it exists, is non-empty and was written for ``key`` (when given)."""
    if cache is None or not cache.is_file() or cache.stat().st_size == 0:
        return None
    if key is not None:
        try:
            stored = json.loads(_key_file(cache).read_text()).get("key")
        except (OSError, ValueError):
            return None
        if stored != key:
            return None
    return cache.read_bytes()


def write_cache(cache: Path, key: str | None, data: bytes) -> None:
    """Write TensorRT's cache bytes and the key they belong to, each atomically."""
    write_bytes_atomic(cache, data)
    write_bytes_atomic(_key_file(cache), json.dumps({"key": key}).encode())


class DeviceBuffer:
    """One GPU buffer for calibration batches (memory from :mod:`edgeft.platform.cudamem`)."""

    def __init__(self, nbytes: int):

        self.mem = cuda_memory()
        self.backend = self.mem.name
        self.nbytes = nbytes
        self._buf = self.mem.alloc(nbytes)

    def upload(self, array: np.ndarray) -> int:
        """Copy ``array`` in and wait (TensorRT reads it on its own stream); its pointer."""
        self.mem.upload(self._buf, np.ascontiguousarray(array))
        self.mem.sync()
        return self.mem.ptr(self._buf)

    def free(self) -> None:
        self.mem.free(self._buf)
        self.mem.close()


def allocate_device_buffer(nbytes: int):
    """A GPU buffer for calibration; returns ``(buffer, backend_name)``."""
    buf = DeviceBuffer(nbytes)
    return buf, buf.backend


def rebatch(batches: Iterable[np.ndarray], chw: tuple[int, int, int]) -> Iterator[np.ndarray]:
    """Float32 NCHW batches of one size (the first batch's); the last partial one is dropped.

    TensorRT calibrates at one fixed shape (the calibration profile), so a data loader's
    smaller last batch is regrouped rather than passed through.
    """
    size = None
    pending: list[np.ndarray] = []
    held = 0
    for batch in batches:
        batch = np.asarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(chw):
            raise ValueError(
                f"calibration batch has shape {batch.shape}; the network takes (N, {', '.join(map(str, chw))})"
            )
        if batch.dtype != np.float32:
            raise ValueError(f"calibration batch has dtype {batch.dtype}; expected float32")
        if size is None:
            size = batch.shape[0]
        pending.append(batch)
        held += batch.shape[0]
        while held >= size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield np.ascontiguousarray(joined[:size])
            rest = joined[size:]
            pending, held = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)


def make_entropy_calibrator(trt, batches, cache: Path | None, key: str | None):
    """An ``IInt8EntropyCalibrator2`` of module ``trt`` fed by ``batches``.

    ``batches`` yields float32 NCHW arrays of the calibration profile's shape (see
    :func:`rebatch`); it may be None when ``cache`` holds valid scales for ``key``. Errors raised
    while TensorRT calls back into Python are kept in ``.error`` (an exception cannot
    cross TensorRT's C++ frames) and re-raised by the builder afterwards.
    """
    base = trt.IInt8EntropyCalibrator2

    class EntropyCalibrator(base):
        def __init__(self):
            base.__init__(self)  # required for pybind11 trampolines, else a segfault
            self.cached = read_cache(cache, key)
            self._iter = iter(batches) if batches is not None else iter(())
            self._buffer = None
            self.backend = None
            self.batches = 0
            self.images = 0
            self.error = None
            self.cache_written = False

        def get_batch_size(self):
            # Explicit-batch networks take the batch from the calibration profile's shape;
            # TensorRT 10 deprecates this method. 1 is what Polygraphy returns too.
            return 1

        def get_batch(self, names, *args):
            try:
                array = next(self._iter)
                if self._buffer is None:
                    self._buffer, self.backend = allocate_device_buffer(array.nbytes)
                ptr = self._buffer.upload(array)
                self.batches += 1
                self.images += array.shape[0]
                return [ptr]
            except StopIteration:
                return None
            except Exception as exc:
                self.error = exc
                return None

        def read_calibration_cache(self, *args):
            return self.cached

        def write_calibration_cache(self, data):
            if cache is None:
                return
            try:
                write_cache(cache, key, bytes(data))
                self.cache_written = True
            except Exception as exc:
                self.error = exc

        def free(self):
            if self._buffer is not None:
                self._buffer.free()
                self._buffer = None

    return EntropyCalibrator()
