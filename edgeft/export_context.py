"""The state one ``edgeft export`` shares between its steps: the bundle, the validation
images and the PyTorch reference outputs, the calibration set, and the files staged for the
next commit (hidden temporary names in the bundle, renamed into place with Ctrl-C held back,
right before ``bundle.json`` is replaced)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path

from edgeft.atomic import sha256_file, write_bytes_atomic
from edgeft.bundle import Bundle
from edgeft.console import console, progress
from edgeft.errors import UserError

FILES = {
    "onnx": "model.onnx",
    "onnx-folded": "model-folded.onnx",
    "onnx-int8": "model-int8.onnx",
    "trt-fp16": "model-fp16.plan",
    "trt-int8": "model-int8.plan",
}


@contextlib.contextmanager
def _sigint_held():
    """Delay Ctrl-C until the block (a few renames) is done."""
    got = []
    try:
        old = signal.signal(signal.SIGINT, lambda *a: got.append(a))
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            raise KeyboardInterrupt


class ExportContext:
    """Shared state of one export: the bundle, the reference outputs, the calibration set,
    and the files staged for the next commit."""

    def __init__(self, bundle: Bundle, opts):
        self.bundle, self.opts = bundle, opts
        self.pp, self.labels, self.threads = bundle.preprocessing, bundle.labels, opts.threads
        self._valid = self._ref = self._calib = self._model = None
        self.staged: dict[Path, str] = {}
        self.notes: list[str] = []
        self._sweep_stale()

    def _sweep_stale(self) -> None:
        """Remove hidden temporaries an earlier export left when it was killed (kill -9
        skips the cleanup): staged ``.NAME.*.partial`` files and ``.NAME.*.tmp`` writes.
        The bundle's real files are never touched."""
        for p in self.bundle.path.glob(".*"):
            if p.is_file() and (p.name.endswith(".partial") or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    # -- files ---------------------------------------------------------------------
    def stage(self, final: str) -> Path:
        """A hidden temporary path in the bundle for file ``final`` (renamed at commit)."""
        fd, tmp = tempfile.mkstemp(
            prefix=f".{Path(final).name}.", suffix=".partial", dir=self.bundle.path
        )
        os.close(fd)
        self.staged[Path(tmp)] = final
        return Path(tmp)

    def final_name(self, staged: Path) -> str:
        return self.staged[Path(staged)]

    def rel(self, path: Path) -> str:
        path = Path(path)
        return self.staged.get(path) or str(path.relative_to(self.bundle.path))

    def sha256(self, path: Path) -> str:
        return sha256_file(path)

    def write_aux(self, rel: str, data: bytes) -> None:
        """Write a cache file into the bundle atomically (not part of the manifest)."""
        write_bytes_atomic(self.bundle.path / rel, data)

    def discard(self) -> None:
        for tmp in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()

    def commit(self, records: dict[str, dict]) -> None:
        """Rename the staged files into place and record ``records`` in ``bundle.json``."""
        umask = os.umask(0)
        os.umask(umask)
        with _sigint_held():
            for tmp, final in self.staged.items():
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it 0600
                os.replace(tmp, self.bundle.path / final)
            self.staged.clear()
            self.bundle.manifest.setdefault("artifacts", {}).update(records)
            self.bundle.save_manifest()

    # -- data ----------------------------------------------------------------------
    def valid(self):
        """The labelled validation images (normalised), loaded once."""
        if self._valid is None:
            from edgeft.export_record import labelled_samples
            from edgeft.parity import load_labelled

            samples, source = labelled_samples(self.bundle, self.opts.data)
            with progress("reading validation images", len(samples)) as advance:
                self._valid = load_labelled(samples, self.labels, self.pp, progress=advance)
            self._valid.source = source
            if self._valid.skipped:
                self.notes.append(
                    f"{len(self._valid.skipped)} validation images could not be read and were skipped"
                )
        return self._valid

    def reference(self):
        """FP32 logits on the validation images: the reference every artifact meets.

        PyTorch where it is installed; on a device without torch (building a TensorRT engine
        on a Jetson from a shipped bundle), the bundle's FP32 ONNX through ONNX Runtime,
        which was itself checked against PyTorch when it was exported.
        """
        if self._ref is None:
            from edgeft.parity import run_batches

            x = self.valid().x
            try:
                import torch  # noqa: F401
            except ImportError:
                self._ref = self._onnx_reference(x)
                return self._ref
            from edgeft.runners.torch_runner import TorchRunner

            with (
                self.step("running the PyTorch reference"),
                TorchRunner(self.bundle, threads=self.threads) as r,
            ):
                self._ref = run_batches(r, x)
        return self._ref

    def _onnx_reference(self, x):
        from edgeft.parity import run_batches
        from edgeft.runners.onnxrt import OnnxRunner

        rec = self.bundle.artifacts.get("onnx")
        if not rec or not (rec.get("parity") or {}).get("passed"):
            raise UserError(
                "PyTorch is not installed here and the bundle has no checked FP32 ONNX to compare "
                "against: export it where torch is installed (`edgeft export BUNDLE`), or install torch"
            )
        note = (
            "PyTorch is not installed here: the reference is the bundle's FP32 ONNX (checked "
            "against PyTorch when it was exported)"
        )
        console().print(note)
        self.notes.append(note)
        with (
            self.step("running the FP32 ONNX reference"),
            OnnxRunner(self.bundle, threads=self.threads) as r,
        ):
            return run_batches(r, x, pp=self.pp)

    def calibration(self):
        if self._calib is None:
            from edgeft.calibration import load_calibration

            o = self.opts
            with progress("reading calibration images", o.calib_count) as advance:
                self._calib = load_calibration(
                    self.bundle, self.pp, o.calib_count, o.calib_data, progress=advance
                )
            if self._calib.note:
                console().print(self._calib.note)
                self.notes.append(self._calib.note)
        return self._calib

    def torch_model(self):
        if self._model is None:
            from edgeft.runners.torch_runner import load_torch_model

            self._model = load_torch_model(self.bundle)
        return self._model

    def model_input(self, x, normalize_in_graph: bool):
        from edgeft.parity import fold_input

        return fold_input(x, self.pp) if normalize_in_graph else x

    # -- parity --------------------------------------------------------------------
    def run_runner(self, runner):
        from edgeft.parity import run_batches

        return run_batches(runner, self.valid().x, pp=self.pp)

    def run_onnx(self, path: Path, normalize_in_graph: bool):
        from edgeft.runners.onnxrt import OnnxRunner

        runner = OnnxRunner(self.bundle, path=path, threads=self.threads)
        runner.normalized_input = not normalize_in_graph
        with runner:
            return self.run_runner(runner)

    def figures(self, out, out_kind: str) -> dict:
        from edgeft.parity import compare

        v = self.valid()
        return compare(self.reference(), out, v.targets, self.labels, out_kind, v.paths)

    def tolerance(self, precision: str):
        """The parity tolerance: edgeft.parity's defaults, with INT8's accuracy drop set by
        ``--max-accuracy-drop``."""
        from edgeft.parity import tolerance_for

        if precision == "int8":
            return tolerance_for("int8", {"max_accuracy_drop": self.opts.max_accuracy_drop})
        return tolerance_for(precision)

    def breaches(self, figures: dict, precision: str) -> list[str]:
        from edgeft.parity import breaches

        return breaches(figures, self.tolerance(precision))

    # -- output --------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, what: str):
        """Time a step and print one line when it is done."""
        start = time.perf_counter()
        yield
        console().print(f"{what}: {time.perf_counter() - start:.1f} s")

    def bar(self, what: str, total: int):
        return progress(what, total)
