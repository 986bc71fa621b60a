"""Backends as bench sees them: names, availability, runners, the FP32 reference, and the
helpers around a run (image cache, strict FP32 on CUDA)."""

from __future__ import annotations

import importlib
import inspect

from edgeft.atomic import sha256_file  # noqa: F401  (re-exported for bench)
from edgeft.errors import UserError

#: Bench-only backends: another artifact through an existing runner.
EXTRA_BACKENDS = {"onnx-folded": ("onnx", {"artifact": "onnx-folded"})}
#: The artifact each backend runs (``torch`` runs the bundle's weights).
ARTIFACT_OF = {
    "onnx": "onnx",
    "onnx-int8": "onnx-int8",
    "onnx-folded": "onnx-folded",
    "trt-fp16": "trt-fp16",
    "trt-int8": "trt-int8",
}
#: Batch size for the ladder's passes over the labelled images.
LADDER_BATCH = 32


def backend_names() -> list[str]:
    """Every backend bench knows, in ladder order."""
    from edgeft.runners import BACKENDS

    names = list(BACKENDS)
    names.insert(names.index("onnx-int8") if "onnx-int8" in names else len(names), "onnx-folded")
    return names


def runner_device(backend: str, device: str) -> str:
    """The device a runner is asked for: PyTorch on a Jetson runs on its CUDA GPU."""
    return "cuda" if device == "jetson" and backend.startswith("torch") else device


def backend_status(name: str, bundle, device: str) -> tuple[bool, str]:
    """Whether ``name`` can run here, and why not."""
    from edgeft.runners import backend_status as status

    base, extra = EXTRA_BACKENDS.get(name, (name, {}))
    ok, reason = status(base, bundle, runner_device(name, device))
    if ok and extra.get("artifact") and extra["artifact"] not in bundle.artifacts:
        return (
            False,
            f"bundle has no {extra['artifact']} artifact (edgeft export with normalisation folded in)",
        )
    return ok, reason


def make_runner(name: str, bundle, device: str, threads: int | None):
    """Construct (not activate) the runner for backend ``name``."""
    from edgeft.runners import BACKENDS, get_runner

    base, extra = EXTRA_BACKENDS.get(name, (name, {}))
    module, cls_name = BACKENDS[base]
    cls = getattr(importlib.import_module(module), cls_name)
    kwargs = {"device": runner_device(name, device), **extra}
    if threads and "threads" in inspect.signature(cls.__init__).parameters:
        kwargs["threads"] = threads
    return get_runner(base, bundle, **kwargs)


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
        from edgeft.console import progress
        from edgeft.parity import load_labelled

        key = repr(sorted(pp.to_dict().items()))
        if key not in self._cache:
            with progress("decoding labelled images", len(self.samples)) as advance:
                self._cache[key] = load_labelled(self.samples, self.labels, pp, progress=advance)
        return self._cache[key]


def reference_logits(bundle, images, threads: int | None):
    """PyTorch FP32 logits on the CPU: the trained model, the rung every backend is judged against."""
    from edgeft.parity import run_batches
    from edgeft.runners.torch_runner import TorchRunner

    ok, reason = TorchRunner.available(bundle, "cpu")
    if not ok:
        raise UserError(f"the parity ladder compares every backend with PyTorch FP32, and {reason}")
    with TorchRunner(bundle, device="cpu", threads=threads) as ref:
        return run_batches(ref, images.x, LADDER_BATCH)
