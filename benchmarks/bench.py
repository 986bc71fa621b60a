"""``edgeft bench``: the parity ladder and latency of every form of a bundle's model, on one device.

For each backend (``torch``, ``torch-fp16``, ``onnx``, ``onnx-folded``, ``onnx-int8``,
``trt-fp16``, ``trt-int8``) that can run here, one runner is activated once and used for
both questions: does it answer like the PyTorch FP32 reference on the labelled images
(:mod:`benchmarks.ladder`), and how fast is it, model only and end to end
(:mod:`benchmarks.latency`). Backends that cannot run are listed with the reason. The
environment is captured (:mod:`edgeft.platform.env`), reports are written
(:mod:`benchmarks.report`), and a tolerance breach raises
:class:`edgeft.errors.ParityError` (exit 3) after the reports are on disk.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import edgeft
from benchmarks.images import LADDER_BATCH, ImageCache, reference_logits, strict_fp32_on_cuda
from benchmarks.ladder import backend_tolerance, ladder_row, parse_tolerances, tolerance_source
from benchmarks.latency import Target, measure
from benchmarks.options import REMOTE_ONLY, BenchOptions
from benchmarks.recommend import recommend
from benchmarks.report import SCHEMA_ID, print_report, raise_on_verdict, write_bench_reports
from benchmarks.tegrastats import summarize
from benchmarks.tegrastats_sampler import TegrastatsSampler
from edgeft import formats
from edgeft.bundle import ArtifactModified, Bundle, file_sha256
from edgeft.console import progress, quiet_if
from edgeft.data import LabelledSet, labelled_folder
from edgeft.errors import UserError
from edgeft.parity import bundle_valid_samples, compare, run_batches
from edgeft.platform.env import capture
from edgeft.platform.jetson import require_jetson
from edgeft.preprocess import artifact_preprocessing
from edgeft.provenance import now_iso

__all__ = ["BenchOptions", "run_bench"]


def _ladder_rung(name, runner, bundle, images, ref_images, ref_logits, overrides) -> tuple:
    """Ladder row of one activated backend, and what its latency measurement needs."""

    record = runner.record
    desc = runner.describe()
    precision = runner.precision
    pp, pp_source, differs = artifact_preprocessing(bundle, record, runner.metadata())
    imgs = images.get(pp)
    # Decoding does not depend on mean/std, but a different resize could skip other images.
    if imgs.paths != ref_images.paths:
        raise UserError(
            f"{name}: its preprocessing reads a different set of images than the reference"
        )
    out = run_batches(runner, imgs, LADDER_BATCH, pp)
    output = getattr(runner, "output", "logits")
    figures = compare(ref_logits, out, imgs.targets, bundle.labels, output, imgs.paths)
    # The tolerance the artifact passed at export, and the figures to compare with, when this
    # backend is the artifact's own form (OpenVINO's bf16 modes run another form's IR under
    # another hint: that form's tolerance and parity are not theirs).
    own = name not in formats.FORMATS or formats.get(name).artifact is None
    same = own and record is not None and record.precision == precision
    recorded = record.parity.get("tolerance") if same else None
    tol = backend_tolerance(name, precision, overrides, recorded)
    tol_from = tolerance_source(name, precision, overrides, recorded)
    row = ladder_row(
        name,
        precision,
        figures,
        tol,
        pp_source=pp_source,
        pp_differs=differs,
        record=record.model_dump() if same else None,
        tolerance_from=tol_from,
    )
    target = Target(name, runner, imgs.head(LADDER_BATCH), imgs.paths, pp)
    return {"precision": precision, "describe": desc}, row, target


def _is_runtime_failure(exc: Exception) -> bool:
    """A backend that cannot run this model here (bad artifact, input shape, provider, out of
    memory), as opposed to a bug: ONNX Runtime's own exceptions derive from Exception only."""
    return isinstance(exc, (UserError, RuntimeError, OSError, MemoryError)) or type(
        exc
    ).__module__.startswith(("onnxruntime", "tensorrt", "pycuda", "cuda"))


def _failure(exc: Exception) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    # A runtime's own error (input shape, provider...): recorded; the exit is non-zero.
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"


def _backend_entry(name: str, bundle, device: str, status: tuple[bool, str]) -> dict:
    _, reason = status
    entry = {"name": name, "status": "unavailable", "reason": reason or None, "runs_on": device}
    record = bundle.artifacts.get(formats.get(name).artifact_name or "")
    if record is not None and (bundle.path / record.path).is_file():
        # A file changed after export no longer matches its parity record: say so (and,
        # without --trust-modified, the runner refuses it).
        entry["sha256_matches_record"] = file_sha256(bundle.path / record.path) == record.sha256
    return entry


def _time_backends(targets, opts, jetson: dict | None, advance) -> tuple[list[dict], dict | None]:
    """Latency of every active backend; on a Jetson, tegrastats runs throughout and each
    backend's model-only segments get the samples that fell inside them."""
    import time

    kwargs = dict(
        warmup=opts.warmup,
        runs=opts.runs,
        seconds=opts.seconds,
        e2e=opts.e2e,
        rounds=opts.rounds,
        progress=advance,
    )
    if jetson is None:
        return measure(targets, opts.batch_sizes, **kwargs), None

    limits = jetson.get("throttle_trip_points_c") or None
    segments: dict[tuple[str, int], list[tuple[float, float]]] = {}

    def on_segment(name, bs, kind, t0, t1):
        if kind == "model":
            segments.setdefault((name, bs), []).append((t0 - start, t1 - start))

    sampler = TegrastatsSampler(interval_ms=opts.tegrastats_interval_ms, executable=opts.tegrastats)
    start = time.monotonic()  # the sampler's own clock starts within microseconds of this
    with sampler:
        latency = measure(targets, opts.batch_sizes, on_segment=on_segment, **kwargs)
    samples = sampler.samples
    for e in latency:
        spans = segments.get((e["backend"], e["batch_size"]), [])
        inside = [s for s in samples if any(a <= s["received_s"] <= b for a, b in spans)]
        e["power"] = {
            **summarize(inside, temp_limits_c=limits),
            "interval_ms": opts.tegrastats_interval_ms,
        }
    whole = {
        **summarize(samples, temp_limits_c=limits),
        "interval_ms": opts.tegrastats_interval_ms,
        "unparsed_lines": sampler.unparsed_lines,
    }
    return latency, whole


def run_bench(opts: BenchOptions) -> dict:
    """Run the bench described by ``opts``, write its reports, and return the report dict.

    Raises:
        UserError: bad options, bundle or data (before any work), or a backend that
            failed to run (after the reports are written).
        ParityError: a backend breached its tolerance (after the reports are written).
    """

    opts.validate()
    with quiet_if(opts.quiet):
        if opts.remote:
            from benchmarks.remote import run_remote

            return run_remote(opts)
        return _run_local(opts)


@dataclass
class _Setup:
    bundle: object
    jetson: dict | None
    overrides: dict
    labelled: object
    images: ImageCache
    ref_images: object
    names: list[str]
    status: dict
    out_dir: Path


def _setup(opts: BenchOptions) -> _Setup:
    """Everything checked before any model runs: bundle, device, data, what can run."""

    bundle = Bundle.load(opts.bundle, opts.trust_modified)
    jetson = None
    if opts.device == "jetson":
        jetson = require_jetson(opts.jetson_root)
    overrides = parse_tolerances(opts.tolerances, formats.names())
    if opts.data is None:
        labelled = LabelledSet(
            bundle_valid_samples(bundle), "the bundle's validation split (split.json)"
        )
    else:
        labelled = labelled_folder(opts.data, bundle.labels)
    names = opts.backends or formats.names()
    images = ImageCache(labelled.samples, bundle.labels)
    ref_images = images.get(bundle.preprocessing)  # unreadable data fails here, before torch loads
    status = {n: formats.status(n, bundle, opts.device) for n in names}
    if not any(ok for ok, _ in status.values()):
        raise UserError(
            f"no backend can run on --device {opts.device} here: "
            + "; ".join(f"{n}: {why}" for n, (_, why) in status.items())
        )
    if opts.device in ("cuda", "jetson") and importlib.util.find_spec("torch") is not None:
        strict_fp32_on_cuda()
    out_dir = Path(opts.out) if opts.out else Path(f"bench-{bundle.path.name}-{opts.device}")
    return _Setup(bundle, jetson, overrides, labelled, images, ref_images, names, status, out_dir)


def _ladder(opts: BenchOptions, s: _Setup, ref_logits, advance):
    """Activate each runnable backend once and run its rung; returns
    ``(backends, rows, failed, active targets)``."""

    backends, rows, failed, active = [], [], {}, []
    for name in s.names:
        entry = _backend_entry(name, s.bundle, opts.device, s.status[name])
        backends.append(entry)
        if not s.status[name][0]:
            continue
        runner = None
        try:
            runner = formats.make_runner(name, s.bundle, opts.device, opts.threads)
            runner.activate()
            extra, row, target = _ladder_rung(
                name, runner, s.bundle, s.images, s.ref_images, ref_logits, s.overrides
            )
            entry.update(status="ran", reason=None, **extra)
            rows.append(row)
            active.append(target)
        except Exception as exc:
            if not _is_runtime_failure(exc):  # a bug in edgeft keeps its traceback
                raise
            status = "refused" if isinstance(exc, ArtifactModified) else "failed"
            entry.update(status=status, reason=_failure(exc))
            failed[name] = entry["reason"]
            if runner is not None:
                runner.deactivate()
        advance()
    return backends, rows, failed, active


def _run_local(opts: BenchOptions) -> dict:

    s = _setup(opts)
    ref_logits = reference_logits(s.bundle, s.ref_images, opts.threads)
    latency, power, active = [], None, []
    runnable = [n for n in s.names if s.status[n][0]]
    try:
        with progress("parity ladder", len(runnable)) as advance:
            backends, rows, failed, active = _ladder(opts, s, ref_logits, advance)
        if active:
            kinds = 2 if opts.e2e else 1
            with progress("timing", len(opts.batch_sizes) * kinds) as advance:
                latency, power = _time_backends(active, opts, s.jetson, advance)
    finally:
        for t in active:
            t.runner.deactivate()
    report = _report(opts, s, ref_logits, backends, rows, latency, power, failed)

    write_bench_reports(report, s.out_dir)
    if not opts.quiet:
        print_report(report)
    raise_on_verdict(report)
    return report


def _bundle_section(bundle) -> dict:
    return {
        "path": str(bundle.path.resolve()),
        "name": bundle.path.name,
        "arch": bundle.arch,
        "num_classes": len(bundle.labels),
        "input_size": list(bundle.preprocessing.size),
        "weights_sha256": bundle.manifest.model.weights_sha256,
        "artifacts": sorted(bundle.artifacts),
    }


def _data_section(labelled, images, labels) -> dict:
    return {
        "source": labelled.source,
        "n_images": int(len(images.targets)),
        "per_class": {lb: int((images.targets == i).sum()) for i, lb in enumerate(labels)},
        "skipped_unreadable": len(images.skipped),
        "skipped": images.skipped[:50],
        "unknown_labels": labelled.unknown,
        "ignored_files": labelled.ignored,
    }


def _report(opts, s: _Setup, ref_logits, backends, rows, latency, power, failed) -> dict:
    """The report dict (schema ``edgeft.bench/1``)."""

    breaches = {r["backend"]: r["breaches"] for r in rows if r["breaches"]}
    reference = {
        "backend": "torch",
        "device": "cpu",
        "precision": "fp32",
        "n": int(len(ref_logits)),
        "accuracy": float((ref_logits.argmax(1) == s.ref_images.targets).mean()),
    }
    report = {
        "schema": SCHEMA_ID,
        "created": now_iso(),
        "edgeft": edgeft.__version__,
        "bundle": _bundle_section(s.bundle),
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(opts).items()
            if k not in (*REMOTE_ONLY, "quiet")
        },
        "environment": capture(opts.device, opts.threads, s.jetson),
        "data": _data_section(s.labelled, s.ref_images, s.bundle.labels),
        "backends": backends,
        "ladder": {"reference": reference, "rows": rows},
        "latency": latency,
        "power": power,
        "verdict": {"passed": not breaches and not failed, "breaches": breaches, "failed": failed},
        "files": {"plots": [], "contact_sheets": {}},
        "out": str(s.out_dir),
    }
    report["recommendation"] = recommend(report)
    return report
