"""The labelled images a bench runs every backend on, and the FP32 reference outputs."""

from __future__ import annotations

from edgeft import formats
from edgeft.console import progress
from edgeft.errors import UserError
from edgeft.labelled import load_labelled
from edgeft.parity import run_batches

#: Batch size for the ladder's passes over the labelled images.
LADDER_BATCH = 32


def strict_fp32_on_cuda() -> None:
    """FP32 means FP32: PyTorch lets cuDNN use TF32 by default on Ampere and later, which
    moves logits by ~1e-3 and would breach the FP32 tolerance against the CPU reference."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class ImageCache:
    """Labelled images decoded and preprocessed once per distinct preprocessing contract."""

    def __init__(self, samples, labels):
        self.samples, self.labels, self._cache = samples, labels, {}

    def get(self, pp):
        key = repr(sorted(pp.to_dict().items()))
        if key not in self._cache:
            with progress("decoding labelled images", len(self.samples)) as advance:
                self._cache[key] = load_labelled(self.samples, self.labels, pp, progress=advance)
        return self._cache[key]


def reference_logits(bundle, images, threads: int | None):
    """PyTorch FP32 logits on the CPU: the trained model, the rung every backend is judged against."""
    ok, reason = formats.status("torch", bundle, "cpu")
    if not ok:
        raise UserError(f"the parity ladder compares every backend with PyTorch FP32, and {reason}")
    with formats.make_runner("torch", bundle, "cpu", threads) as ref:
        return run_batches(ref, images, LADDER_BATCH)
