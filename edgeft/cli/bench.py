"""``edgeft bench``."""

from __future__ import annotations

from benchmarks.options import BenchOptions
from edgeft.cli.build import add_command


def _run(opts: BenchOptions) -> None:
    from edgeft.console import set_quiet
    from edgeft.errors import UserError

    set_quiet(opts.quiet)
    if opts.compare:
        from benchmarks.report.compare import run_compare

        run_compare(opts.compare, opts.out)
        return
    if opts.options_json is not None:
        from benchmarks.options import read_options_json

        opts = read_options_json(opts.options_json, opts)
    if opts.bundle is None:
        raise UserError("edgeft bench needs a BUNDLE folder (or --compare A.json B.json)")
    from benchmarks.bench import run_bench

    run_bench(opts)


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "bench",
        BenchOptions,
        _run,
        "Parity ladder and latency of every backend of a bundle on this device (exit 3 on a "
        "breach). Every backend is compared with PyTorch FP32 on labelled images and timed per "
        "batch size, model only and end to end; writes report.json, report.md and PNG plots.",
    )
