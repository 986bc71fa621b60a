"""GPU memory and a CUDA stream for TensorRT, from whatever the machine has.

One small wrapper serves the TensorRT runner (its input/output buffers, allocated once in
``activate``) and the INT8 calibrator (its batch buffer). Backends, first that works:
``cuda-python`` (NVIDIA's bindings; a device need not install torch for them), then a CUDA
build of ``torch`` (NVIDIA's Jetson wheels have one). Not run on this project's machines
(no GPU); written to the cuda-python runtime API and torch's ``torch.cuda.Stream``.
"""

from __future__ import annotations

import numpy as np

from edgeft.errors import UserError


class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # cuda-python < 12.6 (JetPack 5/6 era)
        self.rt = rt
        self.stream = self._ok(rt.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self.stream)

    def _ok(self, result, what):
        err, *value = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"{what} failed: {err}")
        return value[0] if value else None

    def alloc(self, nbytes: int):
        return self._ok(self.rt.cudaMalloc(max(1, nbytes)), "cudaMalloc")

    def ptr(self, mem) -> int:
        return int(mem)

    def upload(self, mem, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(
            self.rt.cudaMemcpyAsync(mem, host.ctypes.data, host.nbytes, kind, self.stream),
            "cudaMemcpyAsync",
        )

    def download(self, host: np.ndarray, mem) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(
            self.rt.cudaMemcpyAsync(host.ctypes.data, mem, host.nbytes, kind, self.stream),
            "cudaMemcpyAsync",
        )

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def free(self, mem) -> None:
        self.rt.cudaFree(mem)

    def close(self) -> None:
        self.rt.cudaStreamDestroy(self.stream)


class _Torch:
    name = "torch"

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = int(self.stream.cuda_stream)

    def alloc(self, nbytes: int):
        return self.torch.empty(max(1, nbytes), dtype=self.torch.uint8, device="cuda")

    def ptr(self, mem) -> int:
        return int(mem.data_ptr())

    def upload(self, mem, host: np.ndarray) -> None:
        src = self.torch.from_numpy(np.ascontiguousarray(host).reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            mem[: src.numel()].copy_(src, non_blocking=False)

    def download(self, host: np.ndarray, mem) -> None:
        self.sync()
        flat = host.reshape(-1).view(np.uint8)
        flat[:] = mem[: flat.size].cpu().numpy()

    def sync(self) -> None:
        self.stream.synchronize()

    def free(self, mem) -> None:
        del mem

    def close(self) -> None:
        self.stream = None


def cuda_memory():
    """The first GPU memory backend that works here.

    Raises:
        UserError: none works; the message says what to install.
    """
    reasons = []
    for cls in (_CudaPython, _Torch):
        try:
            return cls()
        except ImportError as exc:
            reasons.append(f"{cls.name}: not installed ({exc.name or exc})")
        except Exception as exc:  # no device, driver mismatch
            reasons.append(f"{cls.name}: {exc}")
    raise UserError(
        "TensorRT needs GPU memory from cuda-python (pip install cuda-python, same CUDA major "
        f"as the driver) or a CUDA build of torch; none works here ({'; '.join(reasons)})"
    )
