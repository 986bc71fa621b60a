"""Fine-tuning strategies: which layer groups train, with which learning rates.

- ``head``: the backbone stays frozen (parameters *and* BatchNorm statistics: frozen
  groups run in eval mode) and only the new head trains; a linear classifier on CNN
  features when combined with ``--head linear``.
- ``discriminative``: fastai's ``fine_tune``: ``freeze_epochs`` with the body frozen, then
  everything unfrozen with a learning-rate slice, so earlier groups learn slower
  (``lr/2/lr_mult`` for the first group up to ``lr/2`` for the head, geometric). By
  default the frozen phase is a linear probe (``frozen_phase="probe"``: the body in eval
  mode, the LR annealed) and the probe is kept when the fine-tuned model scores lower on
  validation (``fallback``): LP-FT, measured in ``benchmarks/studies/recipe_sweep.py``.
- ``full``: every layer trains at one learning rate.
- ``freeze:K``: the first K layer groups stay frozen (as ``head``), the rest train at one
  learning rate.
- ``scratch``: random initialisation, every layer trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeft.errors import UserError

NAMES = ("head", "discriminative", "full", "freeze:K", "scratch")


@dataclass(frozen=True)
class Strategy:
    """A parsed ``--strategy``."""

    name: str
    k: int | None = None  # frozen groups for freeze:K

    @property
    def label(self) -> str:
        return f"freeze:{self.k}" if self.name == "freeze" else self.name

    @property
    def pretrained(self) -> bool:
        return self.name != "scratch"


def parse_strategy(value: str, n_body_groups: int = 4) -> Strategy:
    """Parse ``head``, ``discriminative``, ``full``, ``freeze:K`` or ``scratch``.

    Raises:
        UserError: unknown name, or K outside ``0..n_body_groups``.
    """
    value = value.strip().lower()
    if value in ("head", "discriminative", "full", "scratch"):
        return Strategy(value)
    m = re.fullmatch(r"freeze:(-?\d+)", value)
    if m:
        k = int(m.group(1))
        if not 0 <= k <= n_body_groups:
            raise UserError(
                f"--strategy freeze:{k}: K must be between 0 and {n_body_groups} "
                f"(the body has {n_body_groups} layer groups; the head always trains)"
            )
        return Strategy("freeze", k)
    raise UserError(f"unknown --strategy {value!r}: use one of {', '.join(NAMES)}")


def run_strategy(
    learn,
    strategy: Strategy,
    epochs: int,
    freeze_epochs: int,
    lr: float,
    lr_mult: float,
    probe: bool = False,
    fallback: bool = False,
) -> dict | None:
    """Train ``learn`` (a fastai Learner whose splitter gives body groups + head) as
    ``strategy`` prescribes. Phases are recorded by the :class:`~edgeft.train.finetune` callbacks.

    ``probe`` (discriminative): the frozen phase is a linear probe trained to convergence
    (one-cycle with annealing; fastai's ``fine_tune`` ends its frozen phase at the peak LR,
    ``pct_start=0.99``). ``fallback`` (discriminative): when the fine-tuned model scores a
    lower validation accuracy than the probe it started from, the probe's weights are
    restored (LP-FT, Kumar et al. 2022: fine-tuning can distort features that already fit).
    Returns the fallback's record (both accuracies and which was kept), or ``None``.
    """
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)

    n_groups = len(learn.splitter(learn.model))
    if strategy.name == "discriminative":
        if not (probe or fallback) or freeze_epochs == 0:
            learn.fine_tune(epochs, base_lr=lr, freeze_epochs=freeze_epochs, lr_mult=lr_mult)
            return None
        # fastai's fine_tune, spelled out so that the probe can anneal and be kept
        learn.freeze()
        learn.fit_one_cycle(freeze_epochs, slice(lr), pct_start=0.25 if probe else 0.99)
        probe_acc = _last_accuracy(learn)
        kept = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
        learn.unfreeze()
        base = lr / 2
        learn.fit_one_cycle(epochs, slice(base / lr_mult, base), pct_start=0.3, div=5.0)
        tuned_acc = _last_accuracy(learn)
        record = {"probe_accuracy": probe_acc, "finetuned_accuracy": tuned_acc}
        if fallback and tuned_acc < probe_acc:
            learn.model.load_state_dict(kept)
            learn.freeze()  # what the bundle holds: the body as pretrained
            return {**record, "kept": "probe"}
        return {**record, "kept": "finetuned"}
    if strategy.name == "head":
        learn.freeze_to(n_groups - 1)
        learn.fit_one_cycle(epochs, lr)
    elif strategy.name == "freeze":
        learn.freeze_to(strategy.k)
        learn.fit_one_cycle(epochs, lr)
    else:  # full, scratch
        learn.unfreeze()
        learn.fit_one_cycle(epochs, lr)
    return None


def _last_accuracy(learn) -> float:
    """Validation accuracy after the last epoch, as fastai's recorder holds it."""
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return float(dict(zip(names, learn.recorder.values[-1], strict=False))["accuracy"])


def frozen_eval(strategy: Strategy, n_groups: int) -> int:
    """How many leading groups run in eval mode (frozen for real, BN statistics too)."""
    if strategy.name == "head":
        return n_groups - 1
    if strategy.name == "freeze":
        return strategy.k
    return 0  # discriminative keeps fastai's recipe: frozen BN layers still train
