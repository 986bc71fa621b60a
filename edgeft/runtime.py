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

from edgeft.bundle import Bundle, artifact_preprocessing
from edgeft.errors import UserError
from edgeft.frameprep import FramePrep
from edgeft.metrics import softmax

__all__ = ["Classification", "Classifier", "FramePrep", "candidates", "resolve_backend"]

# Runners whose ``infer`` may run in several threads at once (onnxruntime documents
# InferenceSession.run as thread-safe); others get a lock.
_CONCURRENT = {"onnx", "onnx-int8", "onnx-folded"}
# Backend name -> artifact name, where they differ.
_ARTIFACT = {"torch": None}
# Artifact names that run through another backend's runner.
_ALIASES = {"onnx-folded": ("onnx", {"artifact": "onnx-folded"})}
BACKEND_CHOICES = ("auto", "trt-int8", "trt-fp16", "onnx-int8", "onnx", "onnx-folded", "torch")
_EXPORT_HINTS = {
    "onnx": "edgeft export BUNDLE",
    "onnx-folded": "edgeft export BUNDLE --fold-normalize",
    "onnx-int8": "edgeft export BUNDLE --int8",
    "trt-fp16": "edgeft export BUNDLE --trt --fp16 (on this device)",
    "trt-int8": "edgeft export BUNDLE --trt --int8 (on this device)",
}


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


def _gpu_present() -> tuple[bool, str]:
    from exporters.tensorrt_device import probe_gpu

    gpu, reason = probe_gpu()
    return gpu is not None, reason or ""


def detect_device() -> str:
    """``cuda`` where TensorRT or ONNX Runtime's CUDA provider is installed and a GPU is
    visible, else ``cpu`` (the GPU probe runs only when a GPU engine is installed)."""
    import importlib.util

    from edgeft.runners.onnxrt import available_providers

    wants_gpu = importlib.util.find_spec("tensorrt") is not None or (
        "CUDAExecutionProvider" in available_providers()
    )
    return "cuda" if wants_gpu and _gpu_present()[0] else "cpu"


def candidates(device: str = "auto") -> list[tuple[str, str]]:
    """The ``(backend, device)`` pairs ``auto`` tries, best first (see the module notes).

    Args:
        device: ``auto`` (probe), ``cpu`` or ``cuda``.
    """
    if device == "auto":
        device = detect_device()
    if device == "cuda":
        return [
            ("trt-int8", "cuda"),
            ("trt-fp16", "cuda"),
            ("onnx", "cuda"),
            ("onnx-folded", "cuda"),
            ("onnx-int8", "cpu"),
            ("torch", "cuda"),
            ("torch", "cpu"),
        ]
    return [("onnx-int8", "cpu"), ("onnx", "cpu"), ("onnx-folded", "cpu"), ("torch", "cpu")]


def _status(name: str, bundle: Bundle, device: str) -> tuple[bool, str]:
    from edgeft.runners import backend_status
    from edgeft.runners.onnxrt import available_providers

    if name != "onnx-folded":
        return backend_status(name, bundle, device)
    # The folded graph runs through OnnxRunner(artifact="onnx-folded"), whose own
    # ``available`` looks for the plain "onnx" artifact: check this one's needs here.
    provs = available_providers()
    if not provs:
        return False, "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)"
    if "onnx-folded" not in bundle.artifacts:
        return False, "bundle has no onnx-folded artifact (edgeft export --fold-normalize)"
    if device == "cuda" and "CUDAExecutionProvider" not in provs:
        return False, "onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"
    return True, ""


def _make_runner(name: str, bundle: Bundle, device: str, threads: int | None):
    from edgeft.runners import get_runner

    base, opts = _ALIASES.get(name, (name, {}))
    opts = dict(opts, device=device)
    if threads:
        opts["threads"] = threads
    return get_runner(base, bundle, **opts)


def resolve_backend(bundle: Bundle, backend: str = "auto", device: str = "auto") -> tuple[str, str]:
    """Pick the ``(backend, device)`` to run ``bundle`` with.

    Raises:
        UserError: the named backend cannot run here, or (``auto``) nothing can; the
            message names each candidate's reason and what to export.
    """
    if backend != "auto":
        dev = device
        if dev == "auto":
            dev = "cuda" if backend.startswith("trt") else detect_device()
        ok, why = _status(backend, bundle, dev)
        if not ok:
            hint = _EXPORT_HINTS.get(backend, "").replace("BUNDLE", str(bundle.path))
            raise UserError(
                f"backend {backend} cannot run {bundle.path} here: {why}"
                + (f" (make it with `{hint}`)" if hint and "artifact" in why else "")
            )
        return backend, dev
    tried = []
    for name, dev in candidates(device):
        ok, why = _status(name, bundle, dev)
        if ok:
            return name, dev
        tried.append(f"{name}/{dev}: {why}")
    raise UserError(
        f"bundle {bundle.path} has no artifact this machine can run ({'; '.join(tried)}): export one on "
        f"the workstation with `edgeft export {bundle.path}` (ONNX) or `edgeft export {bundle.path} --int8` "
        "(ONNX Runtime INT8, best on CPUs) and copy the bundle here"
    )


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
        record = bundle.artifacts.get(_ARTIFACT.get(backend, backend))
        self.preprocessing, _, _ = artifact_preprocessing(bundle, record, runner.metadata())
        self.prep = FramePrep(self.preprocessing, normalize=runner.normalized_input)
        self._probs_out = getattr(runner, "output", "logits") == "probs"
        self._lock = None if backend in _CONCURRENT else threading.Lock()

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike | Bundle,
        backend: str = "auto",
        device: str = "auto",
        threads: int | None = None,
    ) -> Classifier:
        """Open a bundle and activate the best runner this machine has for it.

        Args:
            bundle: bundle folder (or a loaded :class:`Bundle`).
            backend: ``auto`` or a backend name (``onnx-int8``, ``onnx``, ``onnx-folded``,
                ``trt-int8``, ``trt-fp16``, ``torch``).
            device: ``auto``, ``cpu`` or ``cuda``.
            threads: intra-op threads for CPU backends (default: the engine's own).

        Raises:
            UserError: bad bundle, or nothing here can run it (the message says what to
                export).
        """
        b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        name, dev = resolve_backend(b, backend, device)
        if name.startswith("onnx"):
            _quiet_onnxruntime()
        runner = _make_runner(name, b, dev, threads)
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

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)`` for a preprocessed batch."""
        if self._lock is None:
            out = self.runner.infer(batch)
        else:
            with self._lock:
                out = self.runner.infer(batch)
        out = np.asarray(out)
        return out.astype(np.float64) if self._probs_out else softmax(out)

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


def _quiet_onnxruntime() -> None:
    # ORT logs graph-cleanup warnings at session creation to stderr; a camera service's
    # log should carry only its own messages.
    try:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
    except ImportError:
        pass
