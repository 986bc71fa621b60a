"""PyTorch runners: the FP32 reference every other backend is compared against, FP16
autocast on CUDA, and channels-last memory format on CUDA."""

from __future__ import annotations

import pickle

import numpy as np

from edgeft.errors import UserError
from edgeft.runners.base import Runner


def load_torch_model(bundle):
    """Rebuild the bundle's ``nn.Sequential(body, head)`` and load its weights (no fastai).

    The weights' sha256 is checked against the manifest first, and they are read with
    ``torch.load(weights_only=True)``: a plain state_dict, never a pickled object.

    Raises:
        UserError: the weights file is missing, modified, unreadable, or does not fit the
            recorded arch/head.
    """
    import torch

    from edgeft.models.network import build_model

    path = bundle.weights_file()
    m = bundle.manifest.model
    model = build_model(m.arch, m.num_classes, m.head)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise UserError(
            f"cannot read the bundle weights {path} ({str(exc).splitlines()[0][:120]}): "
            "re-run `edgeft finetune`"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a state_dict: re-run `edgeft finetune`")
    last = [v for v in state.values() if getattr(v, "ndim", 0) == 2]  # the head's last Linear
    bundle.check_io(path.name, None, int(last[-1].shape[0]) if last else None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path} does not fit {m.arch}: {str(exc).splitlines()[0]}") from None
    return model.eval()


class TorchRunner(Runner):
    """PyTorch eager, FP32."""

    def __init__(self, bundle, fmt, device="cpu", threads=None, **_):
        super().__init__(bundle, fmt, device, threads)
        self.model = None

    @classmethod
    def available(cls, bundle, fmt, device: str) -> tuple[bool, str]:
        import torch

        if device in ("cuda", "jetson") and not torch.cuda.is_available():
            return False, "no CUDA device visible to torch"
        return True, ""

    def activate(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        self._dev = "cuda" if self.device in ("cuda", "jetson") else "cpu"
        self.model = self._prepare(load_torch_model(self.bundle).to(self._dev))

    def _prepare(self, model):
        return model

    def _input(self, x):
        return x

    def _forward(self, x):
        return self.model(x)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._dev)
            return self._forward(self._input(x)).float().cpu().numpy()

    def synchronize(self) -> None:
        """Wait for queued GPU work (timing needs it on CUDA)."""
        import torch

        if self._dev == "cuda":
            torch.cuda.synchronize()

    def deactivate(self) -> None:
        self.model = None

    def describe(self) -> dict:
        return {**super().describe(), "framework": "pytorch"}


class TorchFP16Runner(TorchRunner):
    """PyTorch eager under CUDA FP16 autocast (CUDA only)."""

    def _forward(self, x):
        import torch

        with torch.autocast("cuda", dtype=torch.float16):
            return self.model(x)


class TorchChannelsLastRunner(TorchRunner):
    """PyTorch eager FP32 with model and input in channels-last memory format (CUDA):
    cuDNN's NHWC convolution kernels, the layout TensorRT and Tensor Cores prefer."""

    def _prepare(self, model):
        import torch

        return model.to(memory_format=torch.channels_last)

    def _input(self, x):
        import torch

        return x.contiguous(memory_format=torch.channels_last)
