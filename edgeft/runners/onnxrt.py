"""ONNX Runtime runner (FP32, folded and INT8 artifacts): CPU, CUDA or TensorRT providers.

Imports only numpy at module level, and onnxruntime in :meth:`activate`: the runtime and
the camera app use this runner on devices without torch.
"""

from __future__ import annotations

import numpy as np

from edgeft.errors import UserError
from edgeft.runners.base import Runner

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "jetson": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def available_providers() -> list[str]:
    """ONNX Runtime's execution providers here (empty when it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _dim(d):
    return d if isinstance(d, int) else None


class OnnxRunner(Runner):
    """ONNX Runtime on one of the bundle's ONNX artifacts (``fmt.name``)."""

    def __init__(
        self, bundle, fmt, device="cpu", threads=None, path=None, record=None, providers=None
    ):
        super().__init__(bundle, fmt, device, threads, path, record)
        self.providers = providers
        self.session = None

    @classmethod
    def available(cls, bundle, fmt, device: str) -> tuple[bool, str]:
        if device in ("cuda", "jetson") and "CUDAExecutionProvider" not in available_providers():
            return (
                False,
                "onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)",
            )
        return True, ""

    def activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
            ) from None
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # graph-cleanup warnings would bury a service's own log
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        have = set(ort.get_available_providers())
        wanted = self.providers or PROVIDERS.get(self.device, PROVIDERS["cpu"])
        providers = [p for p in wanted if p in have] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=so, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(
                f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:200]}"
            ) from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = inp.name
        out_dims = list(out.shape or [])
        self.bundle.check_io(
            self.path.name,
            [_dim(d) for d in inp.shape or []],
            _dim(out_dims[-1]) if out_dims else None,
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]

    def deactivate(self) -> None:
        self.session = None

    def metadata(self) -> dict:
        if self.session is None:
            return {}
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def describe(self) -> dict:
        d = {**super().describe(), "framework": "onnxruntime"}
        if self.session is not None:
            d["providers"] = self.session.get_providers()
        return d
