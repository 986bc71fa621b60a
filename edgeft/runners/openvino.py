"""OpenVINO runner: the bundle's OpenVINO IR (FP32, or INT8 from NNCF) on the CPU, in FP32
or -- on CPUs with AMX or AVX512-BF16 -- bf16 (``fmt.options["precision_hint"]``).

FP32 means FP32: on CPUs with AMX, OpenVINO runs FP32 models in bf16 unless told otherwise,
so the FP32 form always passes ``INFERENCE_PRECISION_HINT: f32``. ``openvino`` is imported in
:meth:`OpenVinoRunner.activate` only.

Each batch size runs a model compiled for that static shape (a few kept, oldest dropped):
OpenVINO 2026.4's CPU plugin gave wrong INT8 answers at batch 1 through the IR's dynamic
batch dimension on a 32 px MobileNetV2 (top-1 agreeing with the same images at batch 12 on
4 of 12), while the same IR reshaped to a static batch of 1 agreed on all 12. Static shapes
are also what OpenVINO recommends for latency.
"""

from __future__ import annotations

import numpy as np

from edgeft.errors import UserError
from edgeft.platform.cpu import cpu_isa
from edgeft.runners.base import Runner


class OpenVinoRunner(Runner):
    """OpenVINO on one of the bundle's IR artifacts, on the CPU."""

    #: compiled batch sizes kept at once (bench: 1, 8, 32 and the ladder's last partial batch)
    MAX_SHAPES = 4

    def __init__(self, bundle, fmt, device="cpu", threads=None, path=None, record=None, **_):
        super().__init__(bundle, fmt, device, threads, path, record)
        self.hint = fmt.options.get("precision_hint", "f32")
        self._model = self._core = self._config = None
        self._requests: dict[int, object] = {}

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
        self._core, self._config = ov.Core(), config
        try:
            model = self._core.read_model(str(self.path))
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for unreadable models
            raise UserError(
                f"OpenVINO cannot load {self.path}: {str(exc).splitlines()[0][:200]}"
            ) from None
        shape = model.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        out = model.output(0).get_partial_shape()
        n_out = out[len(out) - 1].get_length() if len(out) and out[len(out) - 1].is_static else None
        self.bundle.check_io(self.path.name, dims, n_out)
        self._model, self._requests = model, {}
        self._request(1)  # compile once now: a model OpenVINO cannot compile fails here

    def _request(self, n: int):
        """The infer request of a model compiled for a static batch of ``n``."""
        request = self._requests.pop(n, None)
        if request is None:
            model = self._model.clone()
            dims = [n, *(d.get_length() for d in list(model.input(0).get_partial_shape())[1:])]
            model.reshape(dims)
            try:
                compiled = self._core.compile_model(model, "CPU", self._config)
            except RuntimeError as exc:
                raise UserError(
                    f"OpenVINO cannot compile {self.path}: {str(exc).splitlines()[0][:200]}"
                ) from None
            request = compiled.create_infer_request()
            if len(self._requests) >= self.MAX_SHAPES:
                self._requests.pop(next(iter(self._requests)))  # the least recently used
        self._requests[n] = request  # (re)inserted last: most recently used
        return request

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self._request(len(x)).infer({0: x})[0], dtype=np.float32)

    def deactivate(self) -> None:
        self._model = self._core = None
        self._requests = {}

    def describe(self) -> dict:
        return {**super().describe(), "framework": "openvino", "precision_hint": self.hint}
