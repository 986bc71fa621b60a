"""What every exported artifact is measured against, loaded once per export: the labelled
validation images, the FP32 reference outputs on them, and the calibration images."""

from __future__ import annotations

import contextlib
import time

from edgeft import formats
from edgeft.calibration import load_calibration
from edgeft.console import console, progress
from edgeft.data import labelled_folder
from edgeft.errors import UserError
from edgeft.labelled import load_labelled
from edgeft.parity import bundle_valid_samples, compare, run_batches


@contextlib.contextmanager
def step(what: str, notes: list | None = None):
    """Time a step and print one line when it is done."""
    start = time.perf_counter()
    yield
    console().print(f"{what}: {time.perf_counter() - start:.1f} s")


class Evidence:
    """Validation images, reference outputs and calibration images of one export.

    Each is loaded on first use (an ``--no-check`` FP32 export never decodes an image).
    """

    def __init__(self, bundle, opts):
        self.bundle, self.opts = bundle, opts
        self.pp, self.labels = bundle.preprocessing, bundle.labels
        self.notes: list[str] = []
        self._valid = self._ref = self._calib = self._model = None

    def model(self):
        """The bundle's PyTorch model (weights verified)."""
        if self._model is None:
            from edgeft.runners.torch_runner import load_torch_model

            self._model = load_torch_model(self.bundle)
        return self._model

    def valid(self):
        """The labelled validation images (normalised): ``--data``, else the bundle's split."""
        if self._valid is None:
            unknown = {}
            if self.opts.data is not None:
                found = labelled_folder(self.opts.data, self.labels)
                samples, source, unknown = found.samples, found.source, found.unknown
                if unknown:
                    left = ", ".join(f"{k} ({v})" for k, v in sorted(unknown.items()))
                    self.notes.append(
                        f"--data class folders that are not labels of the bundle were left out: {left}"
                    )
            else:
                samples = bundle_valid_samples(self.bundle)
                source = "bundle validation split (split.json)"
            with progress("reading validation images", len(samples)) as advance:
                self._valid = load_labelled(samples, self.labels, self.pp, progress=advance)
            self._valid.source = source
            self._valid.unknown = unknown
            if self._valid.skipped:
                self.notes.append(
                    f"{len(self._valid.skipped)} validation images could not be read and were skipped"
                )
        return self._valid

    def reference(self):
        """FP32 outputs on the validation images: PyTorch where it is installed; on a device
        without torch, the bundle's FP32 ONNX (itself checked against PyTorch at export)."""
        if self._ref is None:
            if formats.missing_needs(formats.get("torch")) is None:
                with step("running the PyTorch reference"):
                    runner = formats.make_runner("torch", self.bundle, "cpu", self.opts.threads)
                    with runner:
                        self._ref = run_batches(runner, self.valid())
            else:
                self._ref = self._onnx_reference()
        return self._ref

    def _onnx_reference(self):
        rec = self.bundle.artifacts.get("onnx")
        if rec is None or not rec.parity.get("passed"):
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
        runner = formats.make_runner("onnx", self.bundle, "cpu", self.opts.threads)
        with step("running the FP32 ONNX reference"), runner:
            return run_batches(runner, self.valid(), pp=self.pp)

    def calibration(self):
        """The calibration set (normalised inputs), sampled once."""
        if self._calib is None:
            o = self.opts
            with progress("reading calibration images", o.calib_count) as advance:
                self._calib = load_calibration(
                    self.bundle, self.pp, o.calib_count, o.calib_data, progress=advance
                )
            if self._calib.note:
                console().print(self._calib.note)
                self.notes.append(self._calib.note)
        return self._calib

    def figures(self, out, out_kind: str) -> dict:
        """:func:`edgeft.parity.compare` of ``out`` with the reference."""
        v = self.valid()
        return compare(self.reference(), out, v.targets, self.labels, out_kind, v.paths)
