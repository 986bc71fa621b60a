"""What a leaf exporter gets and gives back.

An exporter is a function ``build(request) -> BuildResult`` in its own module, named in
the formats table (:mod:`edgeft.formats`). It receives explicit inputs only -- the file to
build from, its own typed options, the calibration images, and for exporters that search
(INT8 keeping sensitive layers in float) a ``judge`` that scores a candidate model -- and
writes one file. It never touches the bundle's manifest: validating the file against the
PyTorch reference and committing it is :mod:`exporters.pipeline`'s job, done once for
every form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Judgement:
    """A candidate model's parity with the FP32 reference on the validation images."""

    passed: bool
    accuracy_drop_pp: float
    agreement: float
    figures: dict


@dataclass(frozen=True)
class BuildRequest:
    """The explicit inputs of one leaf exporter.

    Attributes:
        fmt: the form to build (its :class:`edgeft.formats.Format` row).
        out: the file to write (a private staged path; the pipeline renames it into place).
        workdir: a private folder for intermediate files, removed after the export.
        pp: the preprocessing contract of the bundle.
        labels: class labels in output order.
        options: the exporter's own options object (its module's ``Options``).
        source: the file it is built from (``None``: it is built from ``model``).
        source_sha256: that file's sha256 (keys caches, goes into the record).
        model: returns the PyTorch model (loaded once, on first call).
        calibration: returns the calibration set (:class:`edgeft.calibration.CalibrationSet`).
        judge: scores a candidate ONNX model (``judge(model_proto, optimize)``); None when
            the export runs with ``--no-check``.
        validation: returns the labelled validation images (``edgeft.labelled``), for
            exporters that run candidates with an engine of their own; ``score`` judges
            such a candidate's outputs on them (None with ``--no-check``).
        cache: a folder for caches that outlive the export (calibration ranges).
        metadata: extra metadata to stamp into the file.
        threads: CPU threads for the exporter's own ONNX Runtime runs.
        normalize_in_graph: the built graph applies mean/std itself (its input is 0..1);
            ``calibration()`` gives normalised input, which the exporter converts.
        output: ``logits`` or ``probs`` (a graph ending in softmax).
    """

    fmt: Any
    out: Path
    workdir: Path
    pp: Any
    labels: tuple[str, ...]
    options: Any
    source: Path | None = None
    source_sha256: str | None = None
    model: Callable[[], Any] | None = None
    calibration: Callable[[], Any] | None = None
    judge: Callable[[Any, bool], Judgement] | None = None
    validation: Callable[[], Any] | None = None
    score: Callable[[Any], Judgement] | None = None
    cache: Path | None = None
    metadata: dict = field(default_factory=dict)
    threads: int | None = None
    normalize_in_graph: bool = False
    output: str = "logits"


@dataclass
class BuildResult:
    """What a leaf exporter built (the pipeline adds sha256, size, parity and provenance).

    Attributes:
        build: how it was built (recipe, options, tool output), stored in the record.
        target: what runs it (runtime, provider, device).
        tools: versions of the tools that shaped it, beyond the pipeline's defaults.
        side_files: other files to commit with it, ``final name -> staged path``.
        extra_files: side files the artifact needs to run, ``name -> sha256`` (verified on
            use like the artifact itself).
        source: more about what it was built from, merged into the record's ``source``.
        proxy: a file the pipeline measures in place of the artifact when the artifact
            cannot run here (a TensorRT engine without a GPU: the ONNX it was built from).
        proxy_optimize: run the proxy with ONNX Runtime's graph optimisations (False: the
            Q/DQ arithmetic simulated in float, as TensorRT computes it).
        proxy_scope: a sentence saying what the proxy is.
        notes: sentences for the user.
    """

    build: dict
    target: dict
    tools: dict = field(default_factory=dict)
    side_files: dict[str, Path] = field(default_factory=dict)
    extra_files: dict[str, str] = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    proxy: Path | None = None
    proxy_optimize: bool = True
    proxy_scope: str = ""
    notes: list[str] = field(default_factory=list)


def options_for(cls, source: Any, extra: dict | None = None):
    """Build exporter options ``cls`` (a dataclass) from the fields of ``source`` (the
    export options) it shares by name, then the format row's ``extra`` options."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {n: getattr(source, n) for n in names if hasattr(source, n)}
    values.update({k: v for k, v in (extra or {}).items() if k in names})
    return cls(**values)
