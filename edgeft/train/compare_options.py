"""``edgeft compare`` options (declared once) and the unit of a comparison, one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import UserError
from edgeft.options import opt, parse_list, same_as
from edgeft.train.options import FinetuneOptions
from edgeft.train.strategy import parse_strategy

_F = FinetuneOptions
#: The fine-tuning options ``edgeft compare`` shares with ``edgeft finetune``.
SHARED = (
    "data",
    "arch",
    "epochs",
    "freeze_epochs",
    "lr",
    "batch_size",
    "size",
    "seed",
    "valid_pct",
    "valid_dir",
    "head",
    "weights",
    "aug",
    "balance",
    "positive",
    "precision",
    "frozen_phase",
)


@dataclass
class CompareOptions:
    """What ``edgeft compare`` takes. The fine-tuning options are ``finetune``'s own fields
    (:func:`edgeft.options.same_as`); ``base`` is the :class:`FinetuneOptions` built from
    them (or given directly by a library caller)."""

    data: Path | None = same_as(_F, "data", None)
    arch: str | None = same_as(_F, "arch", None, help="Backbone (see `edgeft finetune --help`).")
    out: Path | None = opt(None, "Folder for runs and reports (reruns resume here).")
    strategies: list[str] = opt(
        None,
        "Comma-separated: scratch, head, discriminative, full, freeze:K.",
        factory=lambda: ["scratch", "head", "discriminative", "full"],
        parse=parse_list,
    )
    epochs: int = same_as(
        _F,
        "epochs",
        5,
        help="Epochs per run (discriminative spends --freeze-epochs of them frozen).",
    )
    repeats: int = opt(1, "Runs per strategy with seeds seed..seed+R-1 (same split).")
    sweep_freeze: bool = opt(
        False,
        "Also the freeze sweep: K = 0..G pretrained groups, frozen vs fine-tuned (Yosinski et al.).",
    )
    freeze_epochs: int = same_as(
        _F, "freeze_epochs", 1, help="Frozen epochs of discriminative, within --epochs (auto: 1)."
    )
    lr: float | str = same_as(
        _F, "lr", help="Learning rate (or 'auto'), the same for every strategy."
    )
    batch_size: int = same_as(_F, "batch_size")
    size: tuple[int, int] = same_as(_F, "size")
    seed: int = same_as(_F, "seed", help="Seed of the split and of the first repeat.")
    valid_pct: float = same_as(_F, "valid_pct")
    valid_dir: Path | None = same_as(_F, "valid_dir")
    head: str = same_as(_F, "head")
    weights: str | None = same_as(_F, "weights")
    aug: str = same_as(_F, "aug")
    balance: str = same_as(_F, "balance")
    positive: str | None = same_as(_F, "positive")
    precision: str = same_as(_F, "precision")
    frozen_phase: str = same_as(_F, "frozen_phase")
    jobs: int = opt(1, "Runs trained at once, each in its own process.")
    threads: int | None = opt(
        None,
        "Threads per run (default cores / --jobs). Results depend on seeds and threads: "
        "the same threads give the same numbers whatever --jobs.",
    )
    force: bool = opt(False, "Discard runs already in --out and start over.")
    base: FinetuneOptions | None = None

    def __post_init__(self):
        if self.base is None:
            if self.data is None or self.arch is None or self.out is None:
                raise UserError("edgeft compare needs --data, --arch and --out")
            shared = {name: getattr(self, name) for name in SHARED}
            self.base = FinetuneOptions(out=self.out, **shared)

    def validate(self) -> None:
        self.base.validate()
        if self.base.epochs == "auto":  # one budget for every strategy, stated up front
            raise UserError("edgeft compare trains every run the same: give --epochs N, not auto")
        if self.base.freeze_epochs == "auto":  # e.g. a library caller's FinetuneOptions
            self.base.freeze_epochs = 1  # compare's own default
        if self.jobs < 1:
            raise UserError(f"--jobs must be at least 1, not {self.jobs}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, not {self.threads}")
        if self.repeats < 1:
            raise UserError(f"--repeats must be at least 1, not {self.repeats}")
        if not self.strategies and not self.sweep_freeze:
            raise UserError("--strategies is empty: name at least one, or pass --sweep-freeze")
        seen = set()
        for s in self.strategies:
            label = parse_strategy(s).label
            if label in seen:
                raise UserError(f"--strategies names {label} twice")
            seen.add(label)
        if "discriminative" in self.strategies and self.base.epochs < 2:
            raise UserError(
                "--epochs must be at least 2 with discriminative (1 frozen + 1 unfrozen)"
            )


@dataclass
class RunSpec:
    """One fine-tune of the comparison."""

    name: str  # folder name under runs/
    group: str  # what it is compared as: a strategy label, or a sweep variant
    repeat: int
    opts: FinetuneOptions
    extra: dict = field(default_factory=dict)
