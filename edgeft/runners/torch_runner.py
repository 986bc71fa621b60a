"""PyTorch runners: the FP32 reference every other backend is compared against, and FP16
autocast on CUDA."""

from __future__ import annotations

import numpy as np

from edgeft.errors import UserError
from edgeft.runners.base import Runner


def load_torch_model(bundle):
    """Rebuild the bundle's ``nn.Sequential(body, head)`` and load its weights (no fastai).

    Weights are read with ``torch.load(weights_only=True)``: a plain state_dict, never a
    pickled object.

    Raises:
        UserError: the weights file is missing or does not fit the recorded arch/head.
    """
    import torch

    from edgeft.model import build_model

    path = bundle.weights_path
    if not path.is_file():
        raise UserError(
            f"bundle weights {path} are missing: the bundle is incomplete, re-run finetune"
        )
    model_rec = bundle.manifest["model"]
    model = build_model(
        model_rec["arch"], int(model_rec["num_classes"]), model_rec.get("head", "fastai")
    )
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(
            f"{path} does not fit {model_rec['arch']}: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval()


class TorchRunner(Runner):
    """PyTorch eager, FP32."""

    name = "torch"
    precision = "fp32"

    def __init__(self, bundle, device: str = "cpu", threads: int | None = None):
        self.bundle, self.device, self.threads = bundle, device, threads
        self.model = None

    @classmethod
    def available(cls, bundle, device: str = "cpu") -> tuple[bool, str]:
        try:
            import torch
        except ImportError:
            return False, "torch is not installed (pip install 'edgeft[cpu]')"
        if device == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device visible to torch"
        return True, ""

    def activate(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        dev = "cuda" if self.device == "cuda" else "cpu"
        self.model = load_torch_model(self.bundle).to(dev)
        self._dev = dev

    def _forward(self, x):
        return self.model(x)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._dev)
            out = self._forward(x)
            return out.float().cpu().numpy()

    def synchronize(self) -> None:
        """Wait for queued GPU work (timing needs it on CUDA)."""
        import torch

        if self._dev == "cuda":
            torch.cuda.synchronize()

    def deactivate(self) -> None:
        self.model = None

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "framework": "pytorch",
            "precision": self.precision,
            "device": self.device,
        }


class TorchFP16Runner(TorchRunner):
    """PyTorch eager under CUDA FP16 autocast (CUDA only)."""

    name = "torch-fp16"
    precision = "fp16-autocast"

    def __init__(self, bundle, device: str = "cuda", threads: int | None = None):
        super().__init__(bundle, device, threads)

    @classmethod
    def available(cls, bundle, device: str = "cuda") -> tuple[bool, str]:
        if device != "cuda":
            return False, "FP16 autocast runs on CUDA only (--device cuda)"
        return TorchRunner.available(bundle, "cuda")

    def _forward(self, x):
        import torch

        with torch.autocast("cuda", dtype=torch.float16):
            return self.model(x)
