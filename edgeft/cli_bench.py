"""``edgeft bench``: options in, one library call out (:func:`benchmarks.bench.run_bench`)."""

from __future__ import annotations

from pathlib import Path

import typer

_TOL_HELP = (
    "Override a tolerance: KEY.FIELD=VALUE, KEY a precision (fp32, fp16, int8) or a backend, FIELD "
    "min_agreement (0..1), max_accuracy_drop (pp) or max_abs_diff (number or none). Repeatable. "
    "Defaults: fp32 100% agreement, 0 pp, |diff| <= 1e-4; fp16 99%, 0.5 pp; int8 90%, 1.0 pp."
)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""

    @app.command()
    def bench(
        bundle: Path | None = typer.Argument(
            None, help="Bundle folder (not needed with --compare)."
        ),
        data: Path | None = typer.Option(
            None,
            "--data",
            help="Labelled images: a folder of class folders. "
            "Default: the bundle's recorded validation split.",
        ),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda | jetson."),
        backends: list[str] | None = typer.Option(
            None,
            "--backends",
            help="Comma-separated backends (default: "
            "all; those that cannot run here are listed with the reason): "
            "torch, torch-fp16, onnx, onnx-folded, onnx-int8, trt-fp16, "
            "trt-int8.",
        ),
        batch_sizes: str = typer.Option(
            "1,8,32", "--batch-sizes", help="Comma-separated batch sizes to time."
        ),
        warmup: int = typer.Option(10, "--warmup", help="Untimed calls before each timing."),
        runs: int | None = typer.Option(
            None, "--runs", help="Timed calls per backend, batch size and mode (default 50)."
        ),
        seconds: float | None = typer.Option(
            None, "--seconds", help="Time each measurement for this long instead of --runs."
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            help="Intra-op threads for PyTorch and ONNX Runtime (default: theirs).",
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Report folder (replaced); default ./bench-<bundle>-<device>."
        ),
        tolerance: list[str] | None = typer.Option(None, "--tolerance", help=_TOL_HELP),
        rounds: int = typer.Option(
            5,
            "--rounds",
            help="Spread each backend's timed calls over this many rounds, backends taking turns, "
            "so load changes hit all alike.",
        ),
        no_e2e: bool = typer.Option(
            False, "--no-e2e", help="Time the model only, not decode + preprocess."
        ),
        remote: str | None = typer.Option(
            None,
            "--remote",
            help="USER@HOST[:PORT]: run the bench there over "
            "SSH (key authentication) and bring the report back.",
        ),
        ssh_key: Path | None = typer.Option(None, "--ssh-key", help="Private key for --remote."),
        remote_edgeft: str = typer.Option(
            "edgeft",
            "--remote-edgeft",
            help="The edgeft command on the remote machine (e.g. ~/venv/bin/edgeft).",
        ),
        compare: tuple[Path, Path] | None = typer.Option(
            None,
            "--compare",
            help="Show two report.json files side by side (writes compare.md into --out if given).",
        ),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars or tables."),
    ):
        """Parity ladder and latency of every backend of a bundle on this device (exit 3 on a breach).

        Every backend is compared with PyTorch FP32 on labelled images (accuracy, drop, agreement,
        logit error, flipped images) and timed per batch size, model only and end to end.
        Writes report.json, report.md and PNG plots into --out.
        """
        from edgeft.console import set_quiet
        from edgeft.errors import UserError

        set_quiet(quiet)
        if compare:
            from benchmarks.compare import run_compare

            run_compare(compare, out)
            return
        if bundle is None:
            raise UserError("edgeft bench needs a BUNDLE folder (or --compare A.json B.json)")
        from benchmarks.bench import BenchOptions, parse_int_list, parse_name_list, run_bench

        run_bench(
            BenchOptions(
                bundle=bundle,
                data=data,
                device=device,
                backends=parse_name_list(backends),
                batch_sizes=parse_int_list(batch_sizes),
                warmup=warmup,
                runs=runs,
                seconds=seconds,
                threads=threads,
                out=out,
                tolerances=list(tolerance or []),
                e2e=not no_e2e,
                rounds=rounds,
                remote=remote,
                ssh_key=ssh_key,
                remote_edgeft=remote_edgeft,
                quiet=quiet,
            )
        )
