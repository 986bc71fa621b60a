"""ONNX Runtime runners (FP32 and INT8 artifacts): CPU, CUDA or TensorRT execution providers.

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


class OnnxRunner(Runner):
    """ONNX Runtime on the bundle's ``onnx`` artifact (FP32)."""

    name = "onnx"
    artifact_name = "onnx"

    def __init__(
        self,
        bundle,
        device: str = "cpu",
        threads: int | None = None,
        artifact: str | None = None,
        path=None,
        providers: list[str] | None = None,
    ):
        self.bundle, self.device, self.threads = bundle, device, threads
        self.artifact_name = artifact or self.artifact_name
        self.record = bundle.artifact(self.artifact_name) if path is None else {}
        self.path = path or bundle.path / self.record["path"]
        self.providers = providers
        self.session = None
        self.normalized_input = not self.record.get("normalize_in_graph", False)
        self.output = self.record.get("output", "logits")

    @classmethod
    def available(cls, bundle, device: str = "cpu") -> tuple[bool, str]:
        provs = available_providers()
        if not provs:
            return (
                False,
                "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)",
            )
        if cls.artifact_name not in bundle.artifacts:
            option = "--int8" if cls.artifact_name == "onnx-int8" else "--onnx"
            return False, f"bundle has no {cls.artifact_name} artifact (edgeft export {option})"
        if device in ("cuda", "jetson") and "CUDAExecutionProvider" not in provs:
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
        self.input_name = self.session.get_inputs()[0].name

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
        d = {
            "backend": self.name,
            "framework": "onnxruntime",
            "artifact": str(self.path),
            "precision": self.record.get("precision", "fp32"),
        }
        if self.session is not None:
            d["providers"] = self.session.get_providers()
        return d


class OnnxInt8Runner(OnnxRunner):
    """ONNX Runtime on the bundle's ``onnx-int8`` artifact (static QDQ quantization)."""

    name = "onnx-int8"
    artifact_name = "onnx-int8"
