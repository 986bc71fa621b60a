"""``edgeft finetune`` options, declared once (the CLI is derived from these fields)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgeft.errors import UserError
from edgeft.models.archs import arch_names, get_arch, parse_head
from edgeft.options import opt, parse_size
from edgeft.preprocess import RESIZE_METHODS
from edgeft.train.recipe import AUTO, parse_auto_int
from edgeft.train.strategy import Strategy, parse_strategy

AUG_PRESETS = ("default", "dihedral", "none")
BALANCE_CHOICES = ("none", "weights", "oversample")
PRECISIONS = ("fp32", "fp16", "bf16")
LR_SCALES = ("linear", "none")


def parse_lr(value) -> float | str:
    """A learning rate: a positive finite number, or ``"auto"`` (fastai's lr_find)."""
    if isinstance(value, (int, float)):
        lr = float(value)
    elif str(value).strip().lower() == "auto":
        return "auto"
    else:
        try:
            lr = float(value)
        except ValueError:
            raise UserError(f"--lr must be a number or 'auto', not {value!r}") from None
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"--lr must be positive and finite (or 'auto'), not {value!r}")
    return lr


def _finite(name: str, value: float | None, minimum: float, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or not math.isfinite(value) or value < minimum:
        raise UserError(f"--{name} must be a finite number >= {minimum:g}, not {value}")


def precision_problem(precision: str, cuda: bool, cpu_bf16: bool) -> str | None:
    """Why ``--precision`` cannot run here (one line), or ``None``.

    On a CPU, fp16 autocast is emulated (MobileNetV2 training step 11x slower than FP32
    measured on an AMD EPYC without AVX512-FP16), and bf16 needs native support (AVX512-BF16,
    AMX or ARM bf16); refusing is better than a silent slowdown.
    """
    if precision == "fp32" or cuda:
        return None
    if precision == "fp16":
        return "--precision fp16 needs a CUDA GPU (on a CPU fp16 is emulated and much slower)"
    if precision == "bf16" and not cpu_bf16:
        return (
            "--precision bf16 needs a GPU or a CPU with AVX512-BF16, AMX or ARM bf16; this CPU "
            "has no native bf16: use --precision fp32"
        )
    return None


FROZEN_PHASES = ("fastai", "probe")


@dataclass
class FinetuneOptions:
    """Everything ``edgeft finetune`` takes; defaults are edgeft's default recipe."""

    data: Path = opt(help="Folder of class folders, train/+valid/ folders, or a CSV of path,label.")
    arch: str = opt(help="Backbone: " + ", ".join(arch_names()) + ".")
    out: Path = opt(help="Bundle folder to write.")
    strategy: str = opt("discriminative", "head | discriminative | full | freeze:K | scratch.")
    epochs: int | str = opt(
        AUTO,
        "Epochs (after the frozen epochs for discriminative), or auto: about 300 optimizer "
        "steps in all, 3 to 12 epochs (recorded).",
        parse=lambda v: parse_auto_int(v, "epochs", 1),
    )
    freeze_epochs: int | str = opt(
        AUTO,
        "Frozen-backbone epochs first (discriminative only), or auto: about 40 steps, 1 to 3.",
        parse=lambda v: parse_auto_int(v, "freeze-epochs", 0),
    )
    lr: float | str = opt(
        2e-3,
        "Learning rate, or 'auto' (fastai's lr_find valley, on cached body features when the "
        "body starts frozen; recorded).",
        parse=parse_lr,
    )
    lr_mult: float = opt(100.0, "Discriminative: the head's LR over the first group's.")
    wd: float | None = opt(None, "Weight decay (L2, decoupled); default fastai's 0.01.")
    batch_size: int | str = opt(
        AUTO,
        "Batch size, or auto: 64 if that leaves 40+ steps per epoch, else 32 (recorded).",
        parse=lambda v: parse_auto_int(v, "batch-size", 2),
    )
    size: tuple[int, int] = opt((224, 224), "Input size: N or HxW.", parse=parse_size)
    resize: str = opt("crop", "crop (centred, fastai's default) or squish.")
    seed: int = opt(0, "Seed of the split, the head's init and the batches.")
    split_seed: int | None = opt(
        None, "Seed of the train/valid split (default: --seed).", hidden=True
    )
    valid_pct: float = opt(0.2, "Share of each class held out (folder-per-class layout).")
    valid_dir: Path | None = opt(None, "A separate folder of class folders to validate on.")
    head: str = opt("fastai", "fastai (default head), linear, or fc:N.")
    pretrained: bool = opt(True, "Start from ImageNet weights.")
    weights: str | None = opt(None, "Checkpoint file, or a torchvision variant (IMAGENET1K_V1).")
    aug: str = opt(
        "default", "default | dihedral (90-degree rotations + flips, no colour change) | none."
    )
    balance: str = opt("none", "none | weights (class-weighted loss) | oversample.")
    positive: str | None = opt(None, "Positive class for sensitivity/specificity/AUC (2 classes).")
    workers: int = opt(0, "DataLoader worker processes.")
    precision: str = opt(
        "fp32",
        "fp32, or mixed precision fp16 (CUDA) / bf16 (CUDA, or a CPU with native bf16) through "
        "fastai; the exported ONNX stays FP32.",
    )
    lr_scale: str = opt(
        "linear",
        "Under torchrun/accelerate launch (--batch-size is per process): linear = --lr x "
        "processes (the effective batch grows as much), none = --lr as given.",
    )
    dist_timeout: float = opt(
        600.0, "Under a launcher: seconds a process waits for the others before failing."
    )
    channels_last: bool = opt(
        True,
        "Train in channels-last memory format (measured 1.3x faster epochs, MobileNetV2 at "
        "128 px on a 2-core CPU; the same model, numbers equal up to rounding).",
    )
    frozen_phase: str = opt(
        "probe",
        "Discriminative: probe (the frozen phase a linear probe: the body a fixed feature "
        "extractor, BatchNorm statistics included, the LR annealed; LP-FT) or fastai "
        "(fine_tune's own: the frozen body's BatchNorm keeps updating, the LR ends at its peak).",
    )
    fallback: bool = opt(
        True,
        "Discriminative: keep the frozen phase's model when the fine-tuned one scores lower "
        "on the validation split (said on the console and recorded in the bundle).",
    )
    # Yosinski et al.'s transfer protocol (used by ``edgeft compare --sweep-freeze``): keep
    # the pretrained weights of the first K body groups only and re-initialise the rest.
    keep_pretrained_groups: int | None = None
    force: bool = opt(False, "Replace --out if it exists.")
    quiet: bool = opt(False, "No progress bars or tables (for scripts).")
    extra: dict = field(default_factory=dict)

    def validate(self) -> Strategy:
        """Check option values before any work starts; returns the parsed strategy.

        Raises:
            UserError: one line naming the bad option.
        """
        spec = get_arch(self.arch)
        strategy = parse_strategy(self.strategy, len(spec.groups))
        parse_head(self.head)
        self.epochs = parse_auto_int(self.epochs, "epochs", 1)
        self.freeze_epochs = parse_auto_int(self.freeze_epochs, "freeze-epochs", 0)
        self.batch_size = parse_auto_int(self.batch_size, "batch-size", 2)
        self.lr = parse_lr(self.lr)
        _finite("lr-mult", self.lr_mult, 1.0, allow_none=False)
        _finite("wd", self.wd, 0.0)
        if min(self.size) < 16 or max(self.size) > 2048:
            raise UserError(f"--size must be between 16 and 2048 pixels, not {self.size}")
        for flag, value, choices in (
            ("resize", self.resize, RESIZE_METHODS),
            ("aug", self.aug, AUG_PRESETS),
            ("balance", self.balance, BALANCE_CHOICES),
            ("precision", self.precision, PRECISIONS),
            ("lr-scale", self.lr_scale, LR_SCALES),
            ("frozen-phase", self.frozen_phase, FROZEN_PHASES),
        ):
            if value not in choices:
                raise UserError(f"unknown --{flag} {value!r}: use one of {', '.join(choices)}")
        self._validate_distributed()
        if self.workers < 0:
            raise UserError(f"--workers must be 0 or more, not {self.workers}")
        n_groups = len(spec.groups)
        k = self.keep_pretrained_groups
        if k is not None and not 0 <= k <= n_groups:
            raise UserError(f"keep_pretrained_groups must be between 0 and {n_groups}")
        if strategy.name == "scratch" and self.weights:
            raise UserError("--strategy scratch trains from random weights: drop --weights")
        return strategy

    def _validate_distributed(self) -> None:
        from edgeft.train.distributed import world

        _finite("dist-timeout", self.dist_timeout, 10.0, allow_none=False)
        w = world()
        if w.distributed and self.lr == "auto":
            # lr_find under DDP would run on every process's shard with each process
            # restoring its own weights; one process finds the LR, the run then uses it.
            raise UserError(
                f"--lr auto runs fastai's lr_find in one process, not under a launcher with "
                f"{w.size} processes: run `edgeft finetune --lr auto` once without it, then "
                "pass the LR it records (training.lr in bundle.json) as --lr"
            )
