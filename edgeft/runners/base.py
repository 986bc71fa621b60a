"""The runner interface and the backend registry (no heavy imports here)."""

from __future__ import annotations

import abc
import importlib

import numpy as np

from edgeft.errors import UserError


class Runner(abc.ABC):
    """Runs one form of a bundle's model on float32 ``NCHW`` batches, returning logits.

    Subclasses import their framework in :meth:`activate`, so constructing or listing
    runners costs nothing. Use as a context manager.

    Attributes:
        name: backend name (``torch``, ``onnx``, ``onnx-int8``, ``trt-fp16`` ...).
        normalized_input: whether :meth:`infer` expects mean/std-normalised input
            (``False`` for graphs with normalisation folded in: they take 0..1).
    """

    name = "base"
    normalized_input = True

    @abc.abstractmethod
    def activate(self) -> None:
        """Load the model and allocate what inference needs."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` for a float32 ``(N, 3, H, W)`` batch."""

    @abc.abstractmethod
    def deactivate(self) -> None:
        """Release the model."""

    def describe(self) -> dict:
        """What this runner runs (artifact, provider, precision), for reports."""
        return {"backend": self.name}

    def metadata(self) -> dict:
        """Key/value metadata the model file itself carries (ONNX ``metadata_props``)."""
        return {}

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()
        return False


# name -> (module, class). Each module imports its framework lazily.
BACKENDS: dict[str, tuple[str, str]] = {
    "torch": ("edgeft.runners.torch_runner", "TorchRunner"),
    "torch-fp16": ("edgeft.runners.torch_runner", "TorchFP16Runner"),
    "onnx": ("edgeft.runners.onnxrt", "OnnxRunner"),
    "onnx-int8": ("edgeft.runners.onnxrt", "OnnxInt8Runner"),
    "trt-fp16": ("edgeft.runners.tensorrt", "TrtFP16Runner"),
    "trt-int8": ("edgeft.runners.tensorrt", "TrtInt8Runner"),
}


def _runner_class(name: str):
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: choose from {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def get_runner(name: str, bundle, **options) -> Runner:
    """Construct the runner ``name`` for ``bundle`` (not yet activated)."""
    return _runner_class(name)(bundle, **options)


def backend_status(name: str, bundle, device: str = "cpu") -> tuple[bool, str]:
    """Whether backend ``name`` can run ``bundle`` on ``device`` here, and why not."""
    try:
        cls = _runner_class(name)
    except ImportError as exc:
        return False, f"cannot import its runner: {exc}"
    return cls.available(bundle, device)
