"""OpenVINO runner: the bundle's OpenVINO IR (FP32, or INT8 from NNCF) on the CPU, in FP32
or -- on CPUs with AMX or AVX512-BF16 -- bf16 (``fmt.options["precision_hint"]``).

FP32 means FP32: on CPUs with AMX, OpenVINO runs FP32 models in bf16 unless told otherwise,
so the FP32 form always passes ``INFERENCE_PRECISION_HINT: f32``. ``openvino`` is imported in
:meth:`OpenVinoRunner.activate` only.
"""

from __future__ import annotations

import numpy as np

from edgeft.errors import UserError
from edgeft.platform.cpu import cpu_isa
from edgeft.runners.base import Runner


class OpenVinoRunner(Runner):
    """OpenVINO on one of the bundle's IR artifacts, on the CPU."""

    def __init__(self, bundle, fmt, device="cpu", threads=None, path=None, record=None, **_):
        super().__init__(bundle, fmt, device, threads, path, record)
        self.hint = fmt.options.get("precision_hint", "f32")
        self.compiled = None

    @classmethod
    def available(cls, bundle, fmt, device: str) -> tuple[bool, str]:
        if fmt.options.get("precision_hint") == "bf16" and not cpu_isa()["bf16"]:
            return False, "this CPU has no native bf16 (AMX or AVX512-BF16): use openvino (FP32)"
        return True, ""

    def activate(self) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise UserError("openvino is not installed: pip install openvino") from None
        config = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            core = ov.Core()
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for unreadable models
            raise UserError(
                f"OpenVINO cannot load {self.path}: {str(exc).splitlines()[0][:200]}"
            ) from None
        shape = model.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        out = model.output(0).get_partial_shape()
        n_out = out[len(out) - 1].get_length() if len(out) and out[len(out) - 1].is_static else None
        self.bundle.check_io(self.path.name, dims, n_out)
        self._request = self.compiled.create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self._request.infer({0: x})[0], dtype=np.float32)

    def deactivate(self) -> None:
        self.compiled = self._request = None

    def describe(self) -> dict:
        return {**super().describe(), "framework": "openvino", "precision_hint": self.hint}
