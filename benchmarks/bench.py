"""``edgeft bench``: the parity ladder and latency of every form of a bundle's model, on one device.

For each backend (``torch``, ``torch-fp16``, ``onnx``, ``onnx-folded``, ``onnx-int8``,
``trt-fp16``, ``trt-int8``) that can run here, one runner is activated once and used for
both questions: does it answer like the PyTorch FP32 reference on the labelled images
(:mod:`benchmarks.ladder`), and how fast is it, model only and end to end
(:mod:`benchmarks.latency`). Backends that cannot run are listed with the reason. The
environment is captured (:mod:`benchmarks.envcapture`), reports are written
(:mod:`benchmarks.report`), and a tolerance breach raises
:class:`edgeft.errors.ParityError` (exit 3) after the reports are on disk.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path

from benchmarks.backends import (
    ARTIFACT_OF,
    LADDER_BATCH,
    ImageCache,
    backend_names,
    backend_status,
    make_runner,
    reference_logits,
    runner_device,
    sha256_file,
    strict_fp32_on_cuda,
)
from benchmarks.options import DEVICES, BenchOptions, parse_int_list, parse_name_list
from edgeft.errors import ParityError, UserError

__all__ = [
    "DEVICES",
    "BenchOptions",
    "parse_int_list",
    "parse_name_list",
    "run_bench",
    "backend_names",
    "write_bench_reports",
    "raise_on_verdict",
]


def _ladder_rung(name, runner, bundle, images, ref_images, ref_logits, overrides) -> tuple:
    """Ladder row of one activated backend, and what its latency measurement needs."""
    from benchmarks.ladder import backend_tolerance, ladder_row, tolerance_source
    from benchmarks.latency import Target
    from edgeft.bundle import artifact_preprocessing
    from edgeft.parity import compare, run_batches

    record = bundle.artifacts.get(ARTIFACT_OF.get(name, ""), None)
    desc = runner.describe()
    precision = str(desc.get("precision") or (record or {}).get("precision") or "fp32")
    pp, pp_source, differs = artifact_preprocessing(bundle, record, runner.metadata())
    imgs = images.get(pp)
    # Decoding does not depend on mean/std, but a different resize could skip other images.
    if imgs.paths != ref_images.paths:
        raise UserError(
            f"{name}: its preprocessing reads a different set of images than the reference"
        )
    out = run_batches(runner, imgs.x, LADDER_BATCH, pp)
    output = getattr(runner, "output", "logits")
    figures = compare(ref_logits, out, imgs.targets, bundle.labels, output, imgs.paths)
    recorded = ((record or {}).get("parity") or {}).get("tolerance")
    tol = backend_tolerance(name, precision, overrides, recorded)
    tol_from = tolerance_source(name, precision, overrides, recorded)
    row = ladder_row(
        name,
        precision,
        figures,
        tol,
        pp_source=pp_source,
        pp_differs=differs,
        record=record,
        tolerance_from=tol_from,
    )
    target = Target(name, runner, imgs.x, imgs.paths, pp)
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
    ok, reason = status
    entry = {
        "name": name,
        "status": "unavailable",
        "reason": reason or None,
        "runs_on": runner_device(name, device),
    }
    record = bundle.artifacts.get(ARTIFACT_OF.get(name, ""))
    if ok and record and record.get("sha256") and (bundle.path / record["path"]).is_file():
        # A file changed after export no longer matches its parity record: say so.
        entry["sha256_matches_record"] = (
            sha256_file(bundle.path / record["path"]) == record["sha256"]
        )
    return entry


def _time_backends(targets, opts, jetson: dict | None, advance) -> tuple[list[dict], dict | None]:
    """Latency of every active backend; on a Jetson, tegrastats runs throughout and each
    backend's model-only segments get the samples that fell inside them."""
    import time

    from benchmarks.latency import measure

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
    from benchmarks.tegrastats import TegrastatsSampler, summarize

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
    from edgeft.console import quiet_if

    opts.validate()
    with quiet_if(opts.quiet):
        if opts.remote:
            from benchmarks.remote import run_remote

            return run_remote(opts)
        return _run_local(opts)


def _run_local(opts: BenchOptions) -> dict:
    from benchmarks.envcapture import capture
    from benchmarks.ladder import labelled_samples, parse_tolerances
    from edgeft.bundle import Bundle
    from edgeft.console import progress

    bundle = Bundle.load(opts.bundle)
    jetson = None
    if opts.device == "jetson":
        from benchmarks.jetson import require_jetson

        jetson = require_jetson(opts.jetson_root)
    overrides = parse_tolerances(opts.tolerances, backend_names())
    labelled = labelled_samples(bundle, opts.data)
    out_dir = Path(opts.out) if opts.out else Path(f"bench-{bundle.path.name}-{opts.device}")
    names = opts.backends or backend_names()
    images = ImageCache(labelled.samples, bundle.labels)
    ref_images = images.get(bundle.preprocessing)  # unreadable data fails here, before torch loads
    status = {n: backend_status(n, bundle, opts.device) for n in names}
    if not any(ok for ok, _ in status.values()):
        raise UserError(
            f"no backend can run on --device {opts.device} here: "
            + "; ".join(f"{n}: {why}" for n, (_, why) in status.items())
        )
    if opts.device in ("cuda", "jetson") and importlib.util.find_spec("torch") is not None:
        strict_fp32_on_cuda()
    if any(ok and n.startswith("onnx") for n, (ok, _) in status.items()):
        import onnxruntime

        # Graph-cleanup warnings (unused initializers...) would bury the tables; errors still show.
        onnxruntime.set_default_logger_severity(3)
    ref_logits = reference_logits(bundle, ref_images, opts.threads)
    backends, rows, latency, failed, active, power = [], [], [], {}, [], None
    runnable = [n for n in names if status[n][0]]
    kinds = 2 if opts.e2e else 1
    try:
        with progress("parity ladder", len(runnable)) as advance:
            for name in names:
                entry = _backend_entry(name, bundle, opts.device, status[name])
                backends.append(entry)
                if not status[name][0]:
                    continue
                runner = None
                try:
                    runner = make_runner(name, bundle, opts.device, opts.threads)
                    runner.activate()
                    extra, row, target = _ladder_rung(
                        name, runner, bundle, images, ref_images, ref_logits, overrides
                    )
                    entry.update(status="ran", reason=None, **extra)
                    rows.append(row)
                    active.append(target)
                except Exception as exc:
                    if not _is_runtime_failure(exc):  # a bug in edgeft keeps its traceback
                        raise
                    entry.update(status="failed", reason=_failure(exc))
                    failed[name] = entry["reason"]
                    if runner is not None:
                        runner.deactivate()
                advance()
        if active:
            with progress("timing", len(opts.batch_sizes) * kinds) as advance:
                latency, power = _time_backends(active, opts, jetson, advance)
    finally:
        for t in active:
            t.runner.deactivate()

    import edgeft
    from benchmarks.report import SCHEMA_ID
    from edgeft.provenance import now_iso

    breaches = {r["backend"]: r["breaches"] for r in rows if r["breaches"]}
    pp = bundle.preprocessing
    report = {
        "schema": SCHEMA_ID,
        "created": now_iso(),
        "edgeft": edgeft.__version__,
        "bundle": {
            "path": str(bundle.path.resolve()),
            "name": bundle.path.name,
            "arch": bundle.arch,
            "num_classes": len(bundle.labels),
            "input_size": list(pp.size),
            "weights_sha256": bundle.manifest["model"].get("weights_sha256"),
            "artifacts": sorted(bundle.artifacts),
        },
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(opts).items()
            if k not in ("jetson_root", "tegrastats", "quiet", "remote", "ssh_key", "remote_edgeft")
        },
        "environment": capture(opts.device, opts.threads, jetson),
        "data": {
            "source": labelled.source,
            "n_images": int(len(ref_images.targets)),
            "per_class": {
                lb: int((ref_images.targets == i).sum()) for i, lb in enumerate(bundle.labels)
            },
            "skipped_unreadable": len(ref_images.skipped),
            "skipped": ref_images.skipped[:50],
            "unknown_labels": labelled.unknown,
            "ignored_files": labelled.ignored,
        },
        "backends": backends,
        "ladder": {
            "reference": {
                "backend": "torch",
                "device": "cpu",
                "precision": "fp32",
                "n": int(len(ref_logits)),
                "accuracy": float((ref_logits.argmax(1) == ref_images.targets).mean()),
            },
            "rows": rows,
        },
        "latency": latency,
        "power": power,
        "verdict": {"passed": not breaches and not failed, "breaches": breaches, "failed": failed},
        "files": {"plots": [], "contact_sheets": {}},
        "out": str(out_dir),
    }
    write_bench_reports(report, out_dir)
    if not opts.quiet:
        from benchmarks.report import print_report

        print_report(report)
    raise_on_verdict(report)
    return report


def write_bench_reports(report: dict, out_dir: Path) -> Path:
    """Write report.json/.md, the plots and the flipped-image contact sheets into ``out_dir``."""
    from benchmarks import plots
    from benchmarks.report import write_reports

    def pngs(tmp: Path) -> None:
        files = {"plots": [], "contact_sheets": {}}
        for name, fn in (
            ("accuracy_vs_latency.png", plots.accuracy_vs_latency_png),
            ("latency_distribution.png", plots.latency_distribution_png),
        ):
            if fn(report, tmp / name):
                files["plots"].append(name)
        for row in report["ladder"]["rows"]:
            name = f"flipped-{row['backend']}.png"
            if plots.contact_sheet_png(
                row["figures"]["flipped"],
                tmp / name,
                f"{row['backend']}: predictions that differ from PyTorch FP32",
            ):
                files["contact_sheets"][row["backend"]] = name
        report["files"] = files

    return write_reports(report, out_dir, pngs)


def raise_on_verdict(report: dict) -> None:
    """ParityError naming each breach (accuracy drop first), or UserError for failed backends."""
    verdict = report["verdict"]
    where = f" (report: {Path(report['out']) / 'report.md'})"
    if verdict["breaches"]:
        parts = []
        for r in report["ladder"]["rows"]:
            if r["breaches"]:
                f = r["figures"]
                why = (
                    f"{r['backend']}: accuracy {100 * f['accuracy']:.2f}% vs {100 * f['reference_accuracy']:.2f}% "
                    f"(drop {f['accuracy_drop_pp']:.2f} pp), breaches " + ", ".join(r["breaches"])
                )
                if r["preprocessing"]["differs_from_bundle"]:
                    why += (
                        f"; its artifact's preprocessing differs from the bundle's in "
                        f"{', '.join(r['preprocessing']['differs_from_bundle'])}"
                    )
                parts.append(why)
        failed = "".join(f"; {k} failed to run: {v}" for k, v in verdict["failed"].items())
        raise ParityError("parity ladder failed: " + "; ".join(parts) + failed + where, verdict)
    if verdict["failed"]:
        raise UserError(
            "; ".join(f"backend {k} failed to run: {v}" for k, v in verdict["failed"].items())
            + where
        )
