"""TensorRT runner: deserialize a bundle's plan file and run it on the GPU.

A plan only runs with the TensorRT version and GPU model it was built for, so the engine
record is checked with :func:`edgeft.platform.tensorrt.check_engine_compatible` *before*
the plan is deserialized: a mismatch is one line telling the user to rebuild on this
device, never a crash inside TensorRT. ``tensorrt`` (or ``tensorrt_rtx`` for engines
built with it) is imported only in :meth:`TrtRunner.activate` / :meth:`TrtRunner.available`.

Buffers: input and output device memory is allocated once in :meth:`activate`, for the
optimisation profile's largest batch, with one CUDA stream of the runner's own
(:mod:`edgeft.platform.cudamem`); :meth:`infer` only copies and enqueues. Execution uses
the name-based API of TensorRT 8.5+ (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), the oldest release ``pyproject.toml`` admits.

Not run on this project's machines (no GPU, and TensorRT cannot be installed there): the
code follows NVIDIA's Python API for TensorRT 8.5-10.x and TensorRT-RTX.
"""

from __future__ import annotations

import numpy as np

from edgeft.errors import UserError
from edgeft.platform.cudamem import cuda_memory
from edgeft.platform.gpu import probe_gpu
from edgeft.platform.tensorrt import check_engine_compatible, load_trt
from edgeft.runners.base import Runner


def _record_build(record) -> dict:
    return record.get("build", {}) if isinstance(record, dict) else record.build


class TrtRunner(Runner):
    """A TensorRT plan from the bundle (``fmt.name``), or a plan file given with ``path``."""

    def __init__(self, bundle, fmt, device="cuda", threads=None, path=None, record=None, **_):
        super().__init__(bundle, fmt, device, threads, path, record)
        self.engine = self.context = self.mem = None

    @classmethod
    def available(cls, bundle, fmt, device: str) -> tuple[bool, str]:

        build = bundle.artifact(fmt.artifact_name).build
        try:
            trt, _ = load_trt(prefer=(build["tensorrt"]["flavour"],))
        except UserError as exc:
            return False, str(exc)
        except (KeyError, TypeError):
            return False, f"the {fmt.name} record has no TensorRT build information: rebuild it"
        gpu, reason = probe_gpu()
        if gpu is None:
            return False, reason or "no CUDA GPU visible"
        try:
            check_engine_compatible(build, trt)
        except UserError as exc:
            return False, str(exc)
        return True, ""

    def activate(self) -> None:

        build = _record_build(self.record)
        trt, info = load_trt(prefer=(build["tensorrt"]["flavour"],))
        check_engine_compatible(build, trt)  # before TensorRT reads the plan
        self.mem = cuda_memory()
        self._trt = trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UserError(
                f"{info.label} could not load {self.path}: rebuild it on this device with `edgeft export --trt`"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self._in = names[is_input.index(True)]
        self._out = names[is_input.index(False)]
        max_shape = tuple(self.engine.get_tensor_profile_shape(self._in, 0)[2])
        self.max_batch = int(max_shape[0])
        out_shape = tuple(self.engine.get_tensor_shape(self._out))
        self.bundle.check_io(self.path.name, max_shape, int(out_shape[-1]))
        self._in_dtype = np.float16 if self._half(self._in) else np.float32
        self._out_dtype = np.float16 if self._half(self._out) else np.float32
        n_classes = int(out_shape[-1])
        self._host_out = np.empty((self.max_batch, n_classes), self._out_dtype)
        in_bytes = int(np.prod(max_shape)) * np.dtype(self._in_dtype).itemsize
        self._d_in = self.mem.alloc(in_bytes)
        self._d_out = self.mem.alloc(self._host_out.nbytes)
        self.context.set_tensor_address(self._in, self.mem.ptr(self._d_in))
        self.context.set_tensor_address(self._out, self.mem.ptr(self._d_out))

    def _half(self, name: str) -> bool:
        return self.engine.get_tensor_dtype(name) == self._trt.DataType.HALF

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        host_in = np.ascontiguousarray(x, dtype=self._in_dtype)
        self.mem.upload(self._d_in, host_in)
        self.context.set_input_shape(self._in, tuple(host_in.shape))
        if not self.context.execute_async_v3(self.mem.handle):
            raise UserError("TensorRT failed to run the engine")
        out = self._host_out[:n]
        self.mem.download(out, self._d_out)
        self.mem.sync()
        return out.astype(np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        step = max(1, self.max_batch)
        return np.concatenate([self._run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def synchronize(self) -> None:
        if self.mem is not None:
            self.mem.sync()

    def deactivate(self) -> None:
        if self.mem is not None:
            for buf in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
                if buf is not None:
                    self.mem.free(buf)
            self.mem.close()
        self.context = self.engine = self.mem = None

    def describe(self) -> dict:
        build = _record_build(self.record) if self.record is not None else {}
        return {
            **super().describe(),
            "framework": "tensorrt",
            "tensorrt": build.get("tensorrt"),
            "mode": build.get("mode"),
        }
