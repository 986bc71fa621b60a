"""edgeft's default recipe, fitted to the data: batch size, epochs and the frozen phase.

A fixed recipe (batch 64, 1 frozen + 4 epochs) gives a 200-image set about 15 optimizer
steps and it underfits (chest X-ray 100+100: specificity 22%), while a 50,000-image set
gets thousands of steps it does not need. Like BiT's HyperRule (Kolesnikov et al., 2020:
schedule length from the dataset size) the auto values here count optimizer steps:

- batch: 64 when that still leaves :data:`STEPS_PER_EPOCH` steps per epoch, else 32 (small
  sets get smaller batches, so more updates), capped so that a batch holds no more pixels
  than 64 images at 224 x 224 (memory at large input sizes). Not 16: at the default LR a
  head trained on 16-image batches scored lower than on 32-image ones on three of the
  sweep's four datasets (head-only, seed 0: EuroSAT 91.5 / 92.5% against 93.0 / 93.2%,
  chest X-ray 94.1 / 94.3 against 94.8 / 95.3, Imagenette 96.4 / 95.8 against 97.2 /
  96.2; flowers5 level), and with the probe kept as the fallback that head is often the
  model shipped;
- total epochs: enough for :data:`TARGET_STEPS` optimizer steps, between
  :data:`MIN_EPOCHS` and :data:`MAX_EPOCHS` (a large set gets the minimum);
- frozen epochs (discriminative): enough for :data:`FROZEN_STEPS` steps of head-only
  training before the body unfreezes, at most :data:`MAX_FROZEN` (fastai's ``fine_tune``
  uses 1 epoch, which on 200 images is a dozen steps of an untrained head).

The constants are a BiT-like a-priori choice, checked against a sweep of batch size x
epochs x strategy on small datasets (``benchmarks/studies/recipe_sweep.py``, results in the
README's fine-tuning section). Every value the user gives wins; the others are
then chosen around it (a given batch size sets the steps per epoch the epochs count from).
The number of classes does not enter the rule (the measurements gave it no say); it is
recorded with the choice. Pure Python: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeft.errors import UserError

AUTO = "auto"
BATCH_CHOICES = (64, 32)
STEPS_PER_EPOCH = 40
MAX_BATCH_PIXELS = 64 * 224 * 224
TARGET_STEPS = 300
MIN_EPOCHS, MAX_EPOCHS = 3, 12
FROZEN_STEPS = 40
MAX_FROZEN = 3


def parse_auto_int(value, flag: str, minimum: int) -> int | str:
    """``"auto"`` or an integer of at least ``minimum``.

    Raises:
        UserError: anything else (one line naming ``flag``).
    """
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise UserError(f"--{flag} must be an integer or 'auto', not {value!r}") from None
    if isinstance(value, bool) or n < minimum:
        raise UserError(f"--{flag} must be at least {minimum} (or 'auto'), not {value!r}")
    return n


@dataclass(frozen=True)
class Choice:
    """One recipe value: what it is, whether it was chosen (``auto``) or ``given``, and why."""

    value: int
    source: str
    why: str

    def to_dict(self) -> dict:
        return {"value": self.value, "source": self.source, "why": self.why}


@dataclass(frozen=True)
class Recipe:
    """The resolved batch size, epochs after the frozen phase, and frozen epochs."""

    batch_size: Choice
    epochs: Choice
    freeze_epochs: Choice
    n_train: int
    n_classes: int

    def record(self) -> dict:
        """``training.recipe`` of the bundle: each value, its source and why."""
        return {
            "batch_size": self.batch_size.to_dict(),
            "epochs": self.epochs.to_dict(),
            "freeze_epochs": self.freeze_epochs.to_dict(),
            "steps_per_epoch": steps_per_epoch(self.n_train, self.batch_size.value),
            "n_train": self.n_train,
            "n_classes": self.n_classes,
            "rule": {
                "steps_per_epoch": STEPS_PER_EPOCH,
                "target_steps": TARGET_STEPS,
                "epochs": [MIN_EPOCHS, MAX_EPOCHS],
                "frozen_steps": FROZEN_STEPS,
            },
        }

    def line(self, frozen_phase: bool) -> str:
        """One line for the console: the values, ``(auto)`` or ``(given)`` each."""
        spe = steps_per_epoch(self.n_train, self.batch_size.value)
        b, e, f = self.batch_size, self.epochs, self.freeze_epochs
        epochs = f"{e.value} epochs ({e.source})"
        if frozen_phase:
            epochs = f"{f.value} frozen ({f.source}) + " + epochs
        return (
            f"recipe: batch {b.value} ({b.source}), {epochs}: {spe} steps per epoch, "
            f"{spe * (e.value + (f.value if frozen_phase else 0))} steps in all, "
            f"{self.n_train} training images"
        )


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: fastai drops the last partial training batch."""
    return max(1, n_train // max(1, min(batch_size, n_train)))


def _batch(n: int, size: tuple[int, int]) -> Choice:
    cap = max(2, MAX_BATCH_PIXELS // (size[0] * size[1]))
    fits = [b for b in BATCH_CHOICES if b <= cap]
    pick = next((b for b in fits if n // b >= STEPS_PER_EPOCH), fits[-1] if fits else cap)
    pick = max(2, min(pick, n // 2 if n >= 4 else n))
    why = f"{n} training images: the largest of {'/'.join(map(str, BATCH_CHOICES))} "
    why += f"leaving >= {STEPS_PER_EPOCH} steps per epoch ({n // pick} at {pick}"
    why += ")" if n // pick >= STEPS_PER_EPOCH or pick != BATCH_CHOICES[-1] else ", the smallest)"
    if cap < BATCH_CHOICES[0]:
        why += f"; at most {cap} at {size[0]}x{size[1]} px (memory)"
    return Choice(pick, AUTO, why)


def _total_epochs(spe: int) -> tuple[int, str]:
    want = math.ceil(TARGET_STEPS / spe)
    total = min(MAX_EPOCHS, max(MIN_EPOCHS, want))
    why = f"{total} epochs in all: about {TARGET_STEPS} steps at {spe} per epoch"
    if total != want:
        why += f", within {MIN_EPOCHS}..{MAX_EPOCHS} epochs"
    return total, why


def _frozen(spe: int) -> Choice:
    n = min(MAX_FROZEN, max(1, math.ceil(FROZEN_STEPS / spe)))
    return Choice(
        n, AUTO, f"about {FROZEN_STEPS} head-only steps at {spe} per epoch (max {MAX_FROZEN})"
    )


def choose(
    batch_size, epochs, freeze_epochs, n_train: int, n_classes: int, size, frozen_phase: bool
) -> Recipe:
    """Resolve ``"auto"`` values of a finetune run from the training set.

    Args:
        batch_size, epochs, freeze_epochs: the options (an int given by the user, or ``"auto"``).
        n_train: training images one process sees per epoch.
        n_classes: classes (recorded).
        size: input ``(height, width)``.
        frozen_phase: the strategy has a frozen phase (discriminative); otherwise the frozen
            epochs are 0 and ``epochs`` is the whole training.
    """
    given = "given"
    if batch_size == AUTO:
        b = _batch(n_train, size)
    else:
        b = Choice(int(batch_size), given, "--batch-size")
    spe = steps_per_epoch(n_train, b.value)
    if not frozen_phase:
        f = Choice(0, given if freeze_epochs != AUTO else AUTO, "no frozen phase in this strategy")
    elif freeze_epochs == AUTO:
        f = _frozen(spe)
    else:
        f = Choice(int(freeze_epochs), given, "--freeze-epochs")
    if epochs == AUTO:
        total, why = _total_epochs(spe)
        after = max(1, total - f.value)
        if frozen_phase:
            why += f", {after} after the {f.value} frozen"
        e = Choice(after, AUTO, why)
    else:
        e = Choice(int(epochs), given, "--epochs")
    return Recipe(b, e, f, n_train, n_classes)
