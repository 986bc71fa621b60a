"""The runner interface (after Polygraphy's runners): one subclass per backend, named by
:mod:`edgeft.formats`, heavy imports only in :meth:`Runner.activate`."""

from __future__ import annotations

import abc
import sys
from pathlib import Path

import numpy as np

from edgeft.platform.cpu import isa_mismatch


class Runner(abc.ABC):
    """Runs one form of a bundle's model on float32 ``NCHW`` batches, returning its outputs.

    Constructing a runner reads (and, for artifacts, verifies) what it will run; it loads
    nothing heavy until :meth:`activate`. Use as a context manager.

    Args:
        bundle: the :class:`edgeft.bundle.Bundle`.
        fmt: its :class:`edgeft.formats.Format` row.
        device: ``cpu``, ``cuda`` or ``jetson``.
        threads: intra-op threads on the CPU (None: the framework's default).
        path: run this file instead of the bundle's artifact (export validates a staged
            file with it before it is recorded); ``record`` then describes it.

    Attributes:
        name: the form's name (``onnx-int8`` ...).
        normalized_input: whether :meth:`infer` expects mean/std-normalised input
            (``False`` for graphs with normalisation folded in: they take 0..1).
        output: ``logits`` or ``probs``.
    """

    def __init__(
        self, bundle, fmt, device: str = "cpu", threads: int | None = None, path=None, record=None
    ):
        self.bundle, self.fmt, self.device, self.threads = bundle, fmt, device, threads
        self.name = fmt.name
        if fmt.artifact_name is None:
            self.record, self.path = None, None
        elif path is not None:
            self.record, self.path = record, Path(path)
        else:
            self.record = bundle.artifact(fmt.artifact_name)
            self.path = bundle.artifact_path(fmt.artifact_name)  # sha256 checked here
        if fmt.precision == "int8" and path is None:
            _warn_isa(fmt.name, _get(self.record, "target", {}) or {})
        in_graph = _get(self.record, "normalize_in_graph", fmt.normalize_in_graph)
        self.normalized_input = not in_graph
        self.output = _get(self.record, "output", "logits")

    @classmethod
    def available(cls, bundle, fmt, device: str) -> tuple[bool, str]:
        """Runner-specific checks beyond the table's (GPU present, engine fits ...)."""
        return True, ""

    @property
    def precision(self) -> str:
        return self.fmt.precision

    @abc.abstractmethod
    def activate(self) -> None:
        """Load the model and allocate what inference needs."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Outputs ``(N, classes)`` for a float32 ``(N, 3, H, W)`` batch."""

    @abc.abstractmethod
    def deactivate(self) -> None:
        """Release the model."""

    def describe(self) -> dict:
        """What this runner runs (artifact, provider, precision), for reports."""
        return {
            "backend": self.name,
            "precision": self.precision,
            "device": self.device,
            **({"artifact": str(self.path)} if self.path else {}),
        }

    def metadata(self) -> dict:
        """Key/value metadata the model file itself carries (ONNX ``metadata_props``)."""
        return {}

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()
        return False


_warned: set[str] = set()


def _warn_isa(name: str, target: dict) -> None:
    """Warn once per form when its INT8 file was made for another int8 instruction family."""
    why = isa_mismatch(target.get("exported_on"))
    if why and name not in _warned:
        _warned.add(name)
        print(f"edgeft: warning: {name}: {why}", file=sys.stderr)


def _get(record, key: str, default):
    if record is None:
        return default
    if isinstance(record, dict):
        return record.get(key, default)
    return getattr(record, key, default)
