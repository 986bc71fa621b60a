"""The fastai part of ``edgeft finetune``: Learner, callbacks, training, evaluation.

Only this module (and :mod:`edgeft.train.loaders`) imports fastai; nothing downstream of the
bundle does.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeft.platform.tvfix import ensure_torchvision

ensure_torchvision()  # before fastai imports torchvision

import fastai.callback.schedule  # noqa: E402,F401  (patches Learner.fit_one_cycle, fine_tune, lr_find)
import torch  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402
from fastai.callback.progress import ProgressCallback  # noqa: E402
from fastai.learner import Learner, Recorder  # noqa: E402
from fastai.losses import CrossEntropyLossFlat  # noqa: E402
from fastai.metrics import accuracy, top_k_accuracy  # noqa: E402
from fastai.torch_core import default_device, set_seed  # noqa: E402

from edgeft import plots  # noqa: E402
from edgeft.atomic import sha256_file  # noqa: E402
from edgeft.console import console  # noqa: E402
from edgeft.metrics import classification_metrics  # noqa: E402
from edgeft.models.network import build_model, group_modules, layer_groups, reinit_groups  # noqa: E402
from edgeft.models.weights import pretrained_full_model  # noqa: E402
from edgeft.provenance import provenance  # noqa: E402
from edgeft.train.loaders import class_weights, make_dataloaders  # noqa: E402
from edgeft.train.strategy import frozen_eval, run_strategy  # noqa: E402


class FreezeEval(Callback):
    """Run the first ``n`` layer groups in eval mode while training.

    A frozen group then keeps its BatchNorm statistics and skips dropout/stochastic depth:
    it is a fixed feature extractor, bit for bit. (fastai's own freeze keeps BN training.)
    """

    order = 11  # after TrainEvalCallback (order 10) has called model.train()

    def __init__(self, modules: list[torch.nn.Module]):
        self.frozen = modules

    def before_train(self):
        for m in self.frozen:
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
        names = [n for n in self.recorder.metric_names if n not in ("epoch", "time")]
        row = dict(zip(names, self.learn.final_record, strict=False))
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


def _count(params) -> int:
    return int(sum(p.numel() for p in params))


def build_learner(opts, strategy, ds, pp, weights_src, tmpdir: Path):
    """Seed everything, build model + DataLoaders, and wrap them in a fastai Learner."""
    set_seed(opts.seed, reproducible=True)
    full = pretrained_full_model(opts.arch, weights_src) if weights_src is not None else None
    model = build_model(opts.arch, len(ds.labels), opts.head, full=full)
    if opts.keep_pretrained_groups is not None:
        reinit_groups(model, opts.arch, opts.keep_pretrained_groups)
    dls = make_dataloaders(ds, pp, opts.batch_size, opts.aug, opts.balance, opts.workers)
    weight = class_weights(ds) if opts.balance == "weights" else None
    metrics = [accuracy] + ([top_k_accuracy] if len(ds.labels) >= 5 else [])
    n_groups = len(layer_groups(model, opts.arch))
    n_eval = frozen_eval(strategy, n_groups)
    phases, history = [], []
    cbs = [PhaseRecorder(phases, history)]
    if n_eval:
        cbs.append(FreezeEval(group_modules(model, opts.arch)[:n_eval]))
    learn = Learner(
        dls,
        model,
        loss_func=CrossEntropyLossFlat(weight=weight),
        metrics=metrics,
        splitter=lambda m: layer_groups(m, opts.arch),
        wd=opts.wd,
        train_bn=(n_eval == 0),
        cbs=cbs,
        path=tmpdir,
        model_dir=".",
    )
    if opts.quiet:
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *a, **k: None
    return learn, phases, history


def train(opts, strategy, ds, pp, weights_src) -> dict:
    """Train per ``strategy``; returns the trained model, records and validation results."""
    with tempfile.TemporaryDirectory(prefix="edgeft-learn-") as tmp:
        learn, phases, history = build_learner(opts, strategy, ds, pp, weights_src, Path(tmp))
        lr, lr_source, lr_find = opts.lr, "given", None
        if lr == "auto":
            # lr_find on the model as its first phase will see it (frozen body for
            # head/discriminative), like fastai's course recipe.
            if strategy.name in ("head", "discriminative"):
                learn.freeze()
            elif strategy.name == "freeze":
                learn.freeze_to(strategy.k)
            t0 = time.perf_counter()
            with learn.no_bar(), learn.no_logging():
                sugg = learn.lr_find(show_plot=False)
            lr, lr_source = float(sugg.valley), "lr_find"
            lr_find = {"valley": lr, "seconds": time.perf_counter() - t0}
            console().print(f"lr_find chose {lr:.2e} (valley) in {lr_find['seconds']:.0f} s")
            phases.clear()
            history.clear()
        t0 = time.perf_counter()
        run_strategy(learn, strategy, opts.epochs, opts.freeze_epochs, lr, opts.lr_mult)
        train_seconds = time.perf_counter() - t0
        learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, PhaseRecorder)])
        with learn.no_bar():
            probs, targets = learn.get_preds(dl=learn.dls.valid)
        trainable = [
            p for g in layer_groups(learn.model, opts.arch)[learn.opt.frozen_idx :] for p in g
        ]
        wd = learn.wd if learn.wd is not None else learn.opt.hypers[0].get("wd")
    model = learn.model.eval().cpu()
    probs, targets = probs.numpy(), targets.numpy()
    return {
        "model": model,
        "lr": lr,
        "lr_source": lr_source,
        "lr_find": lr_find,
        "wd": float(wd) if wd is not None else None,
        "batch_size": learn.dls.train.bs,
        "phases": phases,
        "history": history,
        "train_seconds": train_seconds,
        "params": {"total": _count(model.parameters()), "trainable": _count(trainable)},
        "device": str(default_device()),
        "threads": torch.get_num_threads(),
        "provenance": provenance(),
        "probs": probs,
        "targets": targets,
        "metrics": classification_metrics(probs, targets, ds.labels, opts.positive),
    }


def save_files(tmp: Path, run: dict, ds, manifest: dict) -> None:
    """Write weights, split, reference predictions and plots into the bundle folder."""
    state = {k: v.detach().cpu().clone() for k, v in run["model"].state_dict().items()}
    torch.save(state, tmp / "weights.pt")
    manifest["model"]["weights_sha256"] = sha256_file(tmp / "weights.pt")
    (tmp / "split.json").write_text(json.dumps(ds.split_record()) + "\n")
    np.savez_compressed(
        tmp / "reference.npz",
        probs=run["probs"].astype(np.float32),
        targets=run["targets"].astype(np.int64),
        paths=np.array([ds.rel(s.path) for s in ds.valid]),
    )
    title = f"{manifest['model']['arch']} · {manifest['training']['strategy']}"
    plots.confusion_matrix_png(
        run["metrics"]["confusion_matrix"],
        ds.labels,
        tmp / "confusion_matrix.png",
        f"Confusion matrix (validation) · {title}",
    )
    plots.training_curves_png(run["history"], tmp / "training_curves.png", title)
    manifest["files"] = {
        "split": "split.json",
        "reference": "reference.npz",
        "plots": ["confusion_matrix.png", "training_curves.png"],
    }
