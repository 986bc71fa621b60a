"""``edgeft bench`` options: what the command line fills in, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeft import formats
from edgeft.errors import UserError
from edgeft.options import opt, parse_int_list, parse_name_list

DEVICES = ("cpu", "cuda", "jetson")
DEFAULT_RUNS = 50


_TOL_HELP = (
    "Override a tolerance: KEY.FIELD=VALUE, KEY a precision (fp32, fp16, int8) or a backend, FIELD "
    "min_agreement (0..1), max_accuracy_drop (pp) or max_scaled_diff (|diff|/(1+|ref|), number or "
    "none). Repeatable. Defaults: fp32 99.5%, 0.5 pp, 1e-4; fp16 99%, 0.5 pp; int8 90%, 1.0 pp."
)


@dataclass
class BenchOptions:
    """Everything ``edgeft bench`` takes.

    ``jetson_root``, ``tegrastats`` and ``tegrastats_interval_ms`` let tests stand a
    recorded Jetson in for a real one.
    """

    bundle: Path | None = opt(None, "Bundle folder (not needed with --compare).", argument=True)
    data: Path | None = opt(
        None,
        "Labelled images: a folder of class folders. Default: the bundle's recorded validation split.",
    )
    device: str = opt("cpu", "cpu | cuda | jetson.")
    backends: list[str] | None = opt(
        None,
        "Comma-separated backends (default: all; those that cannot run here are listed with "
        "the reason): " + ", ".join(formats.names()) + ".",
        parse=parse_name_list,
        repeat=True,
    )
    batch_sizes: tuple[int, ...] = opt(
        (1, 8, 32), "Comma-separated batch sizes to time.", parse=parse_int_list
    )
    warmup: int = opt(10, "Untimed calls before each timing.")
    runs: int | None = opt(None, "Timed calls per backend, batch size and mode (default 50).")
    seconds: float | None = opt(None, "Time each measurement for this long instead of --runs.")
    threads: int | None = opt(
        None, "Intra-op threads for PyTorch and ONNX Runtime (default: theirs)."
    )
    out: Path | None = opt(None, "Report folder (replaced); default ./bench-<bundle>-<device>.")
    tolerances: list[str] = opt(
        None, _TOL_HELP, "--tolerance", factory=list, parse=list, repeat=True
    )
    e2e: bool = opt(True, "Also time decode + preprocess + model (end to end).")
    rounds: int = opt(
        5,
        "Spread each backend's timed calls over this many rounds, backends taking turns, so "
        "load changes hit all alike.",
    )
    remote: str | None = opt(
        None,
        "USER@HOST[:PORT]: run the bench there over SSH (key authentication) and bring the report back.",
    )
    ssh_key: Path | None = opt(None, "Private key for --remote.")
    remote_edgeft: str = opt(
        "edgeft", "The edgeft command on the remote machine (e.g. ~/venv/bin/edgeft)."
    )
    compare: tuple[Path, Path] | None = opt(
        None,
        "Show two report.json files side by side (writes compare.md into --out if given).",
    )
    trust_modified: bool = opt(
        False,
        "Run artifacts whose sha256 differs from their record (reported) instead of refusing them.",
    )
    options_json: Path | None = opt(
        None, "Read every option from this JSON file (what --remote sends).", hidden=True
    )
    quiet: bool = opt(False, "No progress bars or tables.")
    jetson_root: str = "/"
    tegrastats: str = "tegrastats"
    tegrastats_interval_ms: int = 100

    def validate(self) -> None:
        """Check option values before any work starts (fills the ``runs`` default).

        Raises:
            UserError: one line naming the bad option.
        """
        if self.device not in DEVICES:
            raise UserError(f"unknown --device {self.device!r}: use one of {', '.join(DEVICES)}")
        if not self.batch_sizes:
            raise UserError("--batch-sizes is empty: give positive integers, e.g. 1,8,32")
        bad = [b for b in self.batch_sizes if not isinstance(b, int) or b < 1]
        if bad:
            raise UserError(f"--batch-sizes must be positive integers, not {bad[0]}")
        if self.runs is not None and self.seconds is not None:
            raise UserError("give --runs or --seconds, not both")
        if self.runs is not None and self.runs < 1:
            raise UserError(f"--runs must be at least 1, not {self.runs}")
        if self.seconds is not None and not self.seconds > 0:
            raise UserError(f"--seconds must be positive, not {self.seconds}")
        if self.runs is None and self.seconds is None:
            self.runs = DEFAULT_RUNS
        if self.rounds < 1:
            raise UserError(f"--rounds must be at least 1, not {self.rounds}")
        if self.warmup < 0:
            raise UserError(f"--warmup must be 0 or more, not {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, not {self.threads}")
        for name in self.backends or []:
            formats.get(name)  # one line naming the known ones
        from benchmarks.ladder import parse_tolerances

        parse_tolerances(self.tolerances, formats.names())


REMOTE_ONLY = (
    "remote",
    "ssh_key",
    "remote_edgeft",
    "compare",
    "options_json",
    "jetson_root",
    "tegrastats",
    "tegrastats_interval_ms",
)


def read_options_json(path: Path, given: BenchOptions) -> BenchOptions:
    """The options another edgeft sent as JSON (``bench --remote``): the whole options
    object, not a rebuilt command line (see :func:`edgeft.options.to_json`)."""
    from edgeft.options import from_json

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"cannot read the bench options {path}: {exc.strerror or exc}") from None
    return from_json(BenchOptions, text, quiet=given.quiet)
