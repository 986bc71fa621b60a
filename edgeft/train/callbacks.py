"""edgeft's fastai callbacks: frozen groups in eval mode, phase/epoch records, a finite
check after every epoch, and mixed precision on the learner's own device.

Imports fastai: only :mod:`edgeft.train.training` imports this module.
"""

from __future__ import annotations

import math
import time

import numpy as np

from edgeft.platform.tvfix import ensure_torchvision

ensure_torchvision()  # before fastai imports torchvision

import torch  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402
from fastai.callback.fp16 import AMPMode, MixedPrecision  # noqa: E402
from fastai.learner import Recorder  # noqa: E402


class FreezeEval(Callback):
    """Run the first ``n`` layer groups in eval mode while training.

    A frozen group then keeps its BatchNorm statistics and skips dropout/stochastic depth:
    it is a fixed feature extractor, bit for bit. (fastai's own freeze keeps BN training.)
    """

    order = 11  # after TrainEvalCallback (order 10) has called model.train()

    def __init__(self, modules: list[torch.nn.Module], follow_optimizer: bool = False):
        self.frozen, self.follow = modules, follow_optimizer

    def before_train(self):
        # follow_optimizer: the groups frozen *now* (fine_tune's frozen phase, then none)
        n = min(self.opt.frozen_idx, len(self.frozen)) if self.follow else len(self.frozen)
        for m in self.frozen[:n]:
            m.eval()


class PhaseRecorder(Callback):
    """Record each fit call as a phase (trainable groups, peak LR per group) and every
    epoch's losses, metrics and wall time."""

    order = Recorder.order + 1

    def __init__(self, phases: list, history: list):
        self.phases, self.history = phases, history

    def before_fit(self):
        n = len(self.opt.param_lists)
        frozen = self.opt.frozen_idx
        trainable = list(range(frozen, n))
        name = (
            "frozen" if trainable == [n - 1] else "unfrozen" if frozen == 0 else f"freeze:{frozen}"
        )
        self.phase = {
            "name": name,
            "epochs": self.n_epoch,
            "trainable_groups": trainable,
            # The one-cycle schedule's peak per group (fit_one_cycle's lr_max), and below
            # the highest LR the optimizer actually held per group during the phase.
            "lr_per_group": self._scheduled_peak(n),
            "lr_max_seen": [0.0] * n,
        }
        self.phases.append(self.phase)
        self.t_epoch = time.perf_counter()

    def _scheduled_peak(self, n):
        from fastai.callback.schedule import ParamScheduler

        for cb in self.learn.cbs:
            if isinstance(cb, ParamScheduler) and "lr" in cb.scheds:
                grid = np.array(
                    [np.broadcast_to(cb.scheds["lr"](p), (n,)) for p in np.linspace(0, 1, 401)]
                )
                return [float(v) for v in grid.max(axis=0)]
        return [float(h["lr"]) for h in self.opt.hypers]

    def after_batch(self):
        if self.training:
            seen = self.phase["lr_max_seen"]
            for i, h in enumerate(self.opt.hypers):
                seen[i] = max(seen[i], float(h["lr"]))

    def after_fit(self):
        # LRs of groups that did not train in this phase are meaningless: report None.
        for key in ("lr_per_group", "lr_max_seen"):
            self.phase[key] = [
                v if i in self.phase["trainable_groups"] else None
                for i, v in enumerate(self.phase[key])
            ]

    def before_epoch(self):
        self.t_epoch = time.perf_counter()

    def after_epoch(self):
        # final_record: this epoch's values without the epoch number and time string.
        row = epoch_record(self.learn)
        entry = {
            "epoch": len(self.history) + 1,
            "phase": self.phase["name"],
            "seconds": time.perf_counter() - self.t_epoch,
        }
        for key, name in (
            ("train_loss", "train_loss"),
            ("valid_loss", "valid_loss"),
            ("accuracy", "accuracy"),
            ("top5_accuracy", "top_k_accuracy"),
        ):
            if name in row and row[name] is not None:
                entry[key] = float(row[name])
        self.history.append(entry)


def epoch_record(learn) -> dict:
    """This epoch's recorded values (losses, metrics) by name, without epoch and time."""
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return dict(zip(names, learn.final_record, strict=False))


class Diverged(Exception):
    """Raised by :class:`FiniteCheck`. fastai rewrites the message of an exception raised
    in a callback (``Exception occured in ...``), so the one-line text travels in ``line``."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


class FiniteCheck(Callback):
    """After every epoch: the recorded losses and every floating-point tensor of the model
    (weights and BatchNorm statistics) must be finite, or training stops with
    :class:`Diverged` (nothing is written).

    ``agree(ok) -> bool`` makes every process of a distributed run take the same decision
    (one tiny all-reduce per epoch), so no process waits for a peer that already stopped.
    """

    order = Recorder.order + 2  # after Recorder has written this epoch's final_record

    def __init__(self, agree=None):
        self.agree, self.epochs = agree, 0

    def after_epoch(self):
        self.epochs += 1
        problem = self._problem()
        ok = problem is None
        if self.agree is not None:
            ok = self.agree(ok)
        if not ok:
            raise Diverged(
                f"training diverged in epoch {self.epochs}: "
                f"{problem or 'another process saw non-finite values'}; lower --lr"
            )

    def _problem(self) -> str | None:
        parts = [
            f"{name} {v}"
            for name, v in epoch_record(self.learn).items()
            if isinstance(v, (float, int)) and not math.isfinite(v)
        ]
        state = self.learn.model.state_dict()
        bad = [k for k, t in state.items() if t.is_floating_point() and not t.isfinite().all()]
        if bad:
            parts.append(f"{len(bad)} of {len(state)} weight tensors not finite")
        return ", ".join(parts) or None


class DeviceMixedPrecision(MixedPrecision):
    """fastai's :class:`MixedPrecision` (``to_fp16``/``to_bf16``) on the learner's device.

    fastai 2.8 builds ``autocast('cuda')`` and ``GradScaler('cuda')`` whatever the device;
    on a CPU torch then disables both with a warning and the run silently trains in FP32.
    This takes the device type from the DataLoaders; the rest is fastai's callback.
    """

    def before_fit(self):
        dtype = torch.bfloat16 if self.amp_mode == AMPMode.BF16 else torch.float16
        device = getattr(self.dls, "device", None)
        kind = torch.device(device).type if device is not None else "cpu"
        # A GradScaler is needed for fp16 only: bf16 has fp32's range.
        self.kwargs["enabled"] = dtype == torch.float16
        self.autocast = torch.autocast(kind, dtype=dtype)
        self.learn.scaler = torch.amp.GradScaler(kind, **self.kwargs)
        self.scales = []


def add_precision(learn, precision: str) -> None:
    """Mixed precision through fastai's callback (fp32: nothing to add)."""
    if precision in ("fp16", "bf16"):
        learn.add_cb(DeviceMixedPrecision(amp_mode=AMPMode(precision)))
