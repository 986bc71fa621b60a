"""TensorRT runners: deserialize a bundle's plan file and run it on the GPU.

A plan only runs with the TensorRT version and GPU model it was built for, so the engine
record is checked with :func:`exporters.tensorrt_env.check_engine_compatible` *before*
the plan is deserialized: a mismatch is one line telling the user to rebuild on this
device, never a crash inside TensorRT. ``tensorrt`` (or ``tensorrt_rtx`` for engines
built with it) is imported only in :meth:`activate` / :meth:`available`.

Device memory comes from ``cuda-python`` or, where only NVIDIA's PyTorch wheels are
there (common on Jetson), from ``torch.cuda``. Execution uses the name-based API of TensorRT 8.5+
(``set_input_shape``/``set_tensor_address``/``execute_async_v3``), falling back to
bindings + ``execute_v2`` where that API is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeft.errors import UserError
from edgeft.runners.base import Runner


class _TorchMemory:
    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch
        self.stream = torch.cuda.current_stream().cuda_stream

    def put(self, array: np.ndarray):
        t = self.torch.from_numpy(np.ascontiguousarray(array)).cuda()
        return t, int(t.data_ptr())

    def empty(self, shape, dtype=np.float32):
        t = self.torch.empty(
            tuple(shape),
            dtype=self.torch.float32 if dtype == np.float32 else self.torch.float16,
            device="cuda",
        )
        return t, int(t.data_ptr())

    def get(self, handle) -> np.ndarray:
        self.torch.cuda.synchronize()
        return handle.float().cpu().numpy()


class _CudaPythonMemory:
    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt
        self.rt = rt
        self.stream = 0  # the legacy default stream; calls below are synchronous

    def _alloc(self, nbytes):
        err, ptr = self.rt.cudaMalloc(nbytes)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"cudaMalloc failed: {err}")
        return ptr

    def put(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        ptr = self._alloc(array.nbytes)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.rt.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, kind)
        return (ptr, array.shape, array.dtype), int(ptr)

    def empty(self, shape, dtype=np.float32):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = self._alloc(nbytes)
        return (ptr, tuple(shape), np.dtype(dtype)), int(ptr)

    def get(self, handle) -> np.ndarray:
        ptr, shape, dtype = handle
        out = np.empty(shape, dtype)
        self.rt.cudaDeviceSynchronize()
        self.rt.cudaMemcpy(
            out.ctypes.data, ptr, out.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        )
        return out.astype(np.float32)

    def free(self, handle):
        self.rt.cudaFree(handle[0])


def _memory():
    reasons = []
    # cuda-python first: the runtime on a device must not pull in torch just for buffers.
    for cls in (_CudaPythonMemory, _TorchMemory):
        try:
            return cls()
        except Exception as exc:  # ImportError, or no CUDA device
            reasons.append(f"{cls.__name__.strip('_')}: {exc}")
    raise UserError(
        "running a TensorRT engine needs GPU memory from cuda-python (pip install cuda-python) "
        f"or a CUDA build of torch; none works here ({'; '.join(reasons)})"
    )


class TrtRunner(Runner):
    """A TensorRT plan from the bundle (``artifact``), or a plan file given with ``path``."""

    name = "trt"
    artifact_name = "trt-fp16"

    def __init__(
        self,
        bundle,
        device: str = "cuda",
        threads: int | None = None,
        artifact: str | None = None,
        path=None,
        record: dict | None = None,
    ):
        self.bundle, self.device, self.threads = bundle, device, threads
        self.artifact_name = artifact or self.artifact_name
        self.record = record if record is not None else bundle.artifact(self.artifact_name)
        self.path = Path(path) if path is not None else bundle.path / self.record["path"]
        self.normalized_input = not self.record.get("normalize_in_graph", False)
        self.output = self.record.get("output", "logits")
        self.engine = self.context = self.mem = None

    @classmethod
    def available(cls, bundle, device: str = "cuda") -> tuple[bool, str]:
        rec = bundle.artifacts.get(cls.artifact_name)
        if rec is None:
            flag = "--int8" if cls.artifact_name.endswith("int8") else "--fp16"
            return (
                False,
                f"bundle has no {cls.artifact_name} artifact (edgeft export --trt {flag}, on the target device)",
            )
        if device not in ("cuda", "jetson"):
            return False, "TensorRT engines run on an NVIDIA GPU (device cuda)"
        from exporters.tensorrt_device import probe_gpu
        from exporters.tensorrt_env import check_engine_compatible, load_trt

        try:
            trt, _ = load_trt(prefer=(rec["build"]["tensorrt"]["flavour"],))
        except UserError as exc:
            return False, str(exc)
        gpu, reason = probe_gpu()
        if gpu is None:
            return False, reason or "no CUDA GPU visible"
        try:
            check_engine_compatible(rec["build"], trt)
        except UserError as exc:
            return False, str(exc)
        return True, ""

    def activate(self) -> None:
        from exporters.tensorrt_env import check_engine_compatible, load_trt

        trt, info = load_trt(prefer=(self.record["build"]["tensorrt"]["flavour"],))
        check_engine_compatible(self.record["build"], trt)  # before TensorRT reads the plan
        if not self.path.is_file():
            raise UserError(
                f"engine file {self.path} is missing: rebuild it with `edgeft export --trt`"
            )
        self.mem = _memory()
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UserError(
                f"{info.label} could not load {self.path}: rebuild it on this device with `edgeft export --trt`"
            )
        self.context = self.engine.create_execution_context()
        self._named = hasattr(self.engine, "num_io_tensors")
        if self._named:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            mode = trt.TensorIOMode.INPUT
            self._in = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
            self._out = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
            self.max_batch = int(self.engine.get_tensor_profile_shape(self._in, 0)[2][0])
        else:  # TensorRT < 8.5: bindings
            self._in, self._out = 0, 1
            self.max_batch = int(self.engine.get_profile_shape(0, 0)[2][0])

    def _run(self, x: np.ndarray) -> np.ndarray:
        half_in = self._named and self.engine.get_tensor_dtype(self._in) == self._trt.DataType.HALF
        inp, in_ptr = self.mem.put(x.astype(np.float16 if half_in else np.float32))
        if self._named:
            self.context.set_input_shape(self._in, tuple(x.shape))
            out_shape = tuple(self.context.get_tensor_shape(self._out))
            half = self.engine.get_tensor_dtype(self._out) == self._trt.DataType.HALF
            out, out_ptr = self.mem.empty(out_shape, np.float16 if half else np.float32)
            self.context.set_tensor_address(self._in, in_ptr)
            self.context.set_tensor_address(self._out, out_ptr)
            if not self.context.execute_async_v3(self.mem.stream):
                raise UserError("TensorRT failed to run the engine")
        else:
            self.context.set_binding_shape(0, tuple(x.shape))
            out_shape = tuple(self.context.get_binding_shape(1))
            out, out_ptr = self.mem.empty(out_shape)
            if not self.context.execute_v2([in_ptr, out_ptr]):
                raise UserError("TensorRT failed to run the engine")
        result = self.mem.get(out)
        for handle in (inp, out):
            if hasattr(self.mem, "free"):
                self.mem.free(handle)
        return result

    def infer(self, batch: np.ndarray) -> np.ndarray:
        step = max(1, self.max_batch)
        return np.concatenate([self._run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def deactivate(self) -> None:
        self.context = self.engine = self.mem = None

    def describe(self) -> dict:
        build = self.record.get("build", {})
        return {
            "backend": self.name,
            "framework": "tensorrt",
            "artifact": str(self.path),
            "precision": self.record.get("precision"),
            "tensorrt": build.get("tensorrt"),
            "mode": build.get("mode"),
        }


class TrtFP16Runner(TrtRunner):
    """The bundle's ``trt-fp16`` engine."""

    name = "trt-fp16"
    artifact_name = "trt-fp16"


class TrtInt8Runner(TrtRunner):
    """The bundle's ``trt-int8`` engine."""

    name = "trt-int8"
    artifact_name = "trt-int8"
