"""``edgeft export``: plan -> build each artifact with its leaf exporter -> validate it
against the PyTorch model on the bundle's real validation images -> commit.

Each artifact is recorded in ``bundle.json`` with its path, sha256, size, precision, build
options, tool versions, target and the parity figures measured right after the build.

Safe under concurrency and interruption: the whole export holds the bundle's lock (a
second export of the same bundle waits, then sees what the first recorded); every file is
built in a private scratch folder inside the bundle (:mod:`exporters.workdir`), checked,
and only then renamed into place, right before its record is merged into ``bundle.json``
(itself replaced atomically); Ctrl-C is held back during those renames.

An artifact that fails its parity check is not kept: it is not committed or recorded, so a
device can never pick up a model known to disagree with the trained one. The command exits
with code 3 and prints the figures; ``--no-check`` skips the check (the record then says
the artifact was not checked).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeft import formats
from edgeft.bundle import Bundle
from edgeft.console import console, quiet_if
from edgeft.errors import ParityError, UserError
from edgeft.interrupts import sigint_held, sigint_remembered
from exporters import golden
from exporters.evidence import Evidence
from exporters.options import ExportOptions
from exporters.records import artifact_record, failure_message, parity_block, summary_table
from exporters.request import BuildRequest, options_for
from exporters.validate import judge_factory, measure, score_factory, tolerance
from exporters.workdir import sweep, workdir


@dataclass
class ExportResult:
    """The records written, by artifact name, and notes for the user."""

    bundle: Path
    records: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _exporter(fmt):
    module = importlib.import_module(fmt.exporter.partition(":")[0])
    return module, getattr(module, fmt.exporter.partition(":")[2])


def _existing_source(bundle: Bundle, name: str, opts: ExportOptions, notes: list) -> bool:
    """Whether the recorded FP32 ONNX ``name`` can be built from (intact, right output)."""
    rec = bundle.artifacts.get(name)
    if rec is None:
        return False
    try:
        bundle.artifact_path(name)
    except UserError as exc:
        notes.append(f"the recorded {name} cannot be used ({exc}): exported again")
        return False
    if (rec.output == "probs") != opts.softmax:
        want = "probs (--softmax)" if opts.softmax else "logits"
        raise UserError(
            f"the bundle's {name} artifact outputs {rec.output}, this export wants {want}: "
            f"add --onnx --force to re-export it"
        )
    return True


def plan(opts: ExportOptions, bundle: Bundle, notes: list) -> list:
    """The format rows to build, in order, each after the form it is built from.

    Raises:
        UserError: an asked-for artifact exists without ``--force``.
    """
    targets = opts.targets()
    if not opts.force:
        for name in targets:
            if name in bundle.artifacts and (bundle.path / bundle.artifacts[name].path).is_file():
                raise UserError(
                    f"bundle {bundle.path} already has the {name} artifact "
                    f"({bundle.artifacts[name].path}): pass --force to replace it"
                )
    needs_fp32 = any(formats.get(n).source == "onnx" for n in targets)
    if (
        needs_fp32
        and opts.fp32_name not in targets
        and not _existing_source(bundle, opts.fp32_name, opts, notes)
    ):
        targets.insert(0, opts.fp32_name)
    return [formats.get(n) for n in targets]


def _preflight(rows, opts: ExportOptions) -> None:
    """Each exporter's own checks (TensorRT installed, opset range) before any work."""
    for fmt in rows:
        module, _ = _exporter(fmt)
        if hasattr(module, "preflight"):
            module.preflight(options_for(module.Options, opts, fmt.options))


def _check_writable(bundle: Bundle, rows) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".edgeft-write-test-", dir=bundle.path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(
            f"cannot write to bundle {bundle.path}: {exc.strerror or exc}: make it writable "
            "or export a copy"
        ) from None
    for fmt in rows:
        final = bundle.path / fmt.file
        if final.exists() and not final.is_file():
            raise UserError(f"cannot write {final}: it exists and is not a file; move it away")


def _source(fmt, bundle: Bundle, opts: ExportOptions):
    """``(name, path, record)`` of the form ``fmt`` is built from (None: the weights)."""
    if fmt.source is None:
        return None, None, None
    name = opts.fp32_name if fmt.source == "onnx" else fmt.source
    return name, bundle.artifact_path(name), bundle.artifact(name)


def _build_one(fmt, bundle: Bundle, opts: ExportOptions, ev: Evidence, work: Path):
    """Build, validate and commit one artifact; returns its record."""
    module, build = _exporter(fmt)
    src_name, src_path, src_rec = _source(fmt, bundle, opts)
    src_sha = src_rec.sha256 if src_rec else None
    in_graph = src_rec.normalize_in_graph if src_rec else fmt.normalize_in_graph
    output = src_rec.output if src_rec else ("probs" if opts.softmax else "logits")
    staged = work / fmt.file
    request = BuildRequest(
        fmt=fmt,
        out=staged,
        workdir=work,
        pp=bundle.preprocessing,
        labels=tuple(bundle.labels),
        options=options_for(module.Options, opts, fmt.options),
        source=src_path,
        source_sha256=src_sha,
        model=ev.model,
        calibration=ev.calibration,
        judge=judge_factory(ev, fmt.precision, output, in_graph, opts) if opts.check else None,
        validation=ev.valid,
        score=score_factory(ev, fmt.precision, output, opts) if opts.check else None,
        cache=bundle.path / "calibration",
        metadata={
            "edgeft.arch": bundle.arch,
            "edgeft.weights_sha256": bundle.manifest.model.weights_sha256 or "",
        },
        threads=opts.threads,
        normalize_in_graph=in_graph,
        output=output,
    )
    result = build(request)
    stub = {"normalize_in_graph": in_graph, "output": output, "build": result.build}
    if opts.check:
        figures, scope = measure(fmt, bundle, staged, stub, result, ev, opts.threads)
    else:
        figures, scope = None, "not checked (--no-check)"
    parity = parity_block(
        figures, tolerance(fmt.precision, opts), scope, ev.valid() if figures else None
    )
    source = (
        {"artifact": src_name, "path": src_rec.path, "sha256": src_sha}
        if src_rec
        else {
            "weights": bundle.manifest.model.weights,
            "sha256": bundle.manifest.model.weights_sha256,
        }
    )
    record = artifact_record(fmt, staged, stub, result, parity, {**source, **result.source})
    ev.notes.extend(result.notes)
    if parity.get("breaches"):
        raise ParityError(failure_message(fmt.name, record), parity)
    with sigint_held():
        for final, path in result.side_files.items():
            os.replace(path, bundle.path / final)
        os.replace(staged, bundle.path / fmt.file)
        bundle.record_artifacts({fmt.name: record})
    return record


def _commit_golden(bundle: Bundle, ev: Evidence, work: Path) -> None:
    """Add golden images (:mod:`exporters.golden`) to a bundle that has none."""
    staged = golden.stage(ev, work)
    if staged is None:
        return
    spec, folder = staged
    final = bundle.path / folder.name
    with sigint_held():
        if final.exists():  # left by an export killed between rename and record
            shutil.rmtree(final)
        os.replace(folder, final)
        bundle.record_golden(spec)
    ev.notes.append(f"recorded {len(spec.images)} golden images for on-device self-tests")


def export_bundle(opts: ExportOptions) -> ExportResult:
    """Export the artifacts ``opts`` asks for into its bundle (see the module docstring).

    Raises:
        UserError: bad options, bundle, data or environment (exit 2).
        ParityError: an artifact disagrees with the PyTorch model past its tolerance (exit 3).
    """
    with quiet_if(opts.quiet):
        opts.validate()
        bundle = Bundle.load(opts.bundle, opts.trust_modified)
        _preflight([formats.get(n) for n in opts.targets()], opts)
        with bundle.lock("another edgeft export"), sigint_remembered():
            bundle = bundle.reload()  # what the export that held the lock before us recorded
            sweep(bundle.path)
            notes: list[str] = []
            rows = plan(opts, bundle, notes)
            _check_writable(bundle, rows)
            result = ExportResult(bundle.path, notes=notes)
            with workdir(bundle.path) as work:
                ev = Evidence(bundle, opts)
                if any(f.precision == "int8" for f in rows):
                    ev.calibration()  # a bad --calib-data fails here, before anything is recorded
                for fmt in rows:
                    result.records[fmt.name] = _build_one(fmt, bundle, opts, ev, work)
                if opts.check and rows and bundle.manifest.golden is None:
                    _commit_golden(bundle, ev, work)
                result.notes += ev.notes
    if result.records:
        console().print(summary_table(result.records))
    for note in result.notes:
        console().print(f"note: {note}")
    return result
