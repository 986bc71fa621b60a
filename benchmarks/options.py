"""``edgeft bench`` options: what the command line fills in, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import UserError

DEVICES = ("cpu", "cuda", "jetson")
DEFAULT_RUNS = 50


@dataclass
class BenchOptions:
    """Everything ``edgeft bench`` takes (see ``edgeft bench --help``).

    ``jetson_root``, ``tegrastats`` and ``tegrastats_interval_ms`` let tests stand a
    recorded Jetson in for a real one.
    """

    bundle: Path
    data: Path | None = None
    device: str = "cpu"
    backends: list[str] | None = None
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 10
    runs: int | None = None
    seconds: float | None = None
    threads: int | None = None
    out: Path | None = None
    tolerances: list[str] = field(default_factory=list)
    e2e: bool = True
    rounds: int = 5
    remote: str | None = None
    ssh_key: Path | None = None
    remote_edgeft: str = "edgeft"
    quiet: bool = False
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
        from benchmarks.backends import backend_names

        known = backend_names()
        for name in self.backends or []:
            if name not in known:
                raise UserError(f"unknown backend {name!r}: choose from {', '.join(known)}")
        from benchmarks.ladder import parse_tolerances

        parse_tolerances(self.tolerances, known)


def parse_int_list(text: str, what: str = "--batch-sizes") -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; one line naming the bad item otherwise."""
    items = [t for t in text.replace(" ", ",").split(",") if t]
    try:
        return tuple(int(t) for t in items)
    except ValueError:
        raise UserError(
            f"{what} takes comma-separated integers, e.g. 1,8,32, not {text!r}"
        ) from None


def parse_name_list(values) -> list[str] | None:
    """Backend names given comma-separated and/or repeated; None when none given."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return list(dict.fromkeys(names)) or None
