"""Run a bundle on a device: ``Classifier.load(bundle).classify(frame)``.

This is what a camera box imports. It needs numpy, Pillow and one inference engine
(ONNX Runtime or TensorRT); it imports neither torch nor fastai (``tests/test_runtime.py``
proves it by blocking both), and OpenCV only where the caller hands it OpenCV frames.

Backend choice with ``backend="auto"``, best first (see :func:`candidates`):

1. a TensorRT engine (``trt-int8``, then ``trt-fp16``) whose record matches this
   device's TensorRT and GPU (the runner's ``available`` checks it);
2. ONNX Runtime. With a usable CUDA GPU: the FP32 graph (``onnx``, then ``onnx-folded``)
   on the CUDA provider, because ORT's CUDA provider runs few quantized operators and
   falls back to the CPU for the rest. Without one: the INT8 graph (``onnx-int8``: about
   2.5x faster than FP32 on x86 and ARM CPUs, its accuracy drop checked at export), then
   the FP32 ones;
3. PyTorch (FP32 reference), where torch happens to be installed.

Preprocessing is the bundle's contract (:mod:`edgeft.preprocess`), applied to frames by
:class:`edgeft.frameprep.FramePrep` (bit-exact, about twice as fast on camera frames).

Thread safety: :meth:`Classifier.classify` may be called from several threads.
Preprocessing runs in the caller's thread; ONNX Runtime sessions are safe to run
concurrently, every other runner is serialised with a lock (a TensorRT execution
context holds per-call state).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from edgeft import formats
from edgeft.bundle import Bundle
from edgeft.errors import UserError
from edgeft.frameprep import FramePrep
from edgeft.metrics import softmax
from edgeft.preprocess import artifact_preprocessing
from edgeft.runtime.resolve import candidates, detect_device, resolve_backend
from edgeft.runtime.selftest import SelfTest, run_self_test

__all__ = [
    "Classification",
    "Classifier",
    "FramePrep",
    "SelfTest",
    "UserError",
    "candidates",
    "detect_device",
    "resolve_backend",
]


@dataclass
class Classification:
    """Top-k labels for one input, best first.

    Attributes:
        labels: the ``k`` most probable labels.
        probs: their probabilities (softmax over all classes).
        scores: the full probability vector, in bundle label order.
    """

    labels: list[str]
    probs: list[float]
    scores: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.labels[0]

    @property
    def prob(self) -> float:
        """Probability of :attr:`label`."""
        return self.probs[0]

    @property
    def top(self) -> list[tuple[str, float]]:
        """``[(label, prob), ...]``, best first."""
        return list(zip(self.labels, self.probs, strict=True))

    def to_dict(self) -> dict:
        return {"top": [{"label": lb, "prob": round(p, 6)} for lb, p in self.top]}


class Classifier:
    """A bundle ready to classify frames; create it with :meth:`load`.

    Attributes:
        bundle: the loaded :class:`edgeft.bundle.Bundle`.
        labels: class labels in output order.
        backend: the backend in use (``onnx-int8``, ``trt-fp16`` ...).
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, bundle: Bundle, runner, backend: str, device: str):
        self.bundle = bundle
        self.labels = bundle.labels
        self.backend = backend
        self.device = device
        self.runner = runner
        # The artifact's own contract (record, else ONNX metadata), as bench measured it.
        self.preprocessing, _, _ = artifact_preprocessing(bundle, runner.record, runner.metadata())
        self.prep = FramePrep(self.preprocessing, normalize=runner.normalized_input)
        self._probs_out = runner.output == "probs"
        self._lock = None if formats.get(backend).concurrent else threading.Lock()

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike | Bundle,
        backend: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        trust_modified: bool = False,
    ) -> Classifier:
        """Open a bundle and activate the best runner this machine has for it.

        Args:
            bundle: bundle folder (or a loaded :class:`Bundle`).
            backend: ``auto`` or a backend name (``onnx-int8``, ``onnx``, ``onnx-folded``,
                ``trt-int8``, ``trt-fp16``, ``torch``).
            device: ``auto``, ``cpu`` or ``cuda``.
            threads: intra-op threads for CPU backends (default: the engine's own).
            trust_modified: run an artifact whose sha256 differs from its record (with a
                warning) instead of refusing it.

        Raises:
            UserError: bad bundle, or nothing here can run it (the message says what to
                export).
        """
        b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle, trust_modified)
        name, dev = resolve_backend(b, backend, device)
        runner = formats.make_runner(name, b, dev, threads)
        runner.activate()
        return cls(b, runner, name, dev)

    def describe(self) -> dict:
        """Backend, device, artifact and providers, for logs and reports."""
        d = dict(self.runner.describe())
        d.update(backend=self.backend, device=self.device)
        return d

    # -- the three stages, separately timed by the camera app ----------------------------
    def prepare(self, items, channel_order: str = "RGB") -> np.ndarray:
        """Preprocess a list of inputs into one float32 ``NCHW`` batch."""
        return np.stack([self.prep(it, channel_order) for it in items])

    def raw_outputs(self, batch: np.ndarray) -> np.ndarray:
        """The model's own outputs (logits, or probabilities for a softmax graph)."""
        if self._lock is None:
            return np.asarray(self.runner.infer(batch))
        with self._lock:
            return np.asarray(self.runner.infer(batch))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)`` for a preprocessed batch."""
        out = self.raw_outputs(batch)
        return out.astype(np.float64) if self._probs_out else softmax(out)

    def self_test(self) -> SelfTest:
        """Reproduce the bundle's golden-image outputs here (see :mod:`edgeft.runtime.selftest`):
        what a device checks before it trusts a bundle, e.g. before a hot swap."""
        return run_self_test(self)

    def top_k(self, probs: np.ndarray, k: int = 3) -> list[Classification]:
        """Top-``k`` :class:`Classification` per row of a probability matrix."""
        if k < 1:
            raise UserError(f"top_k must be at least 1, not {k}")
        k = min(k, len(self.labels))
        res = []
        for row in np.atleast_2d(probs):
            idx = np.argsort(-row, kind="stable")[:k]
            res.append(
                Classification([self.labels[i] for i in idx], [float(row[i]) for i in idx], row)
            )
        return res

    def classify(self, x, top_k: int = 3, channel_order: str = "RGB"):
        """Classify one input or a batch.

        Args:
            x: one input (an ``H x W x 3`` uint8 frame, a Pillow image or a path), a list
                of them, or an ``N x H x W x 3`` uint8 array.
            top_k: labels per input.
            channel_order: ``RGB`` (default, as Pillow and numpy images) or ``BGR`` for
                frames straight from OpenCV (``cv2.VideoCapture``, ``cv2.imread``).

        Returns:
            A :class:`Classification` for one input, a list of them for a batch.
        """
        single = not isinstance(x, (list, tuple)) and not (
            isinstance(x, np.ndarray) and x.ndim == 4
        )
        items = [x] if single else list(x)
        if not items:
            return []
        res = self.top_k(self.probabilities(self.prepare(items, channel_order)), top_k)
        return res[0] if single else res

    def close(self) -> None:
        """Release the model."""
        if self.runner is not None:
            self.runner.deactivate()
            self.runner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
