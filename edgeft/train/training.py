"""The fastai part of ``edgeft finetune``: Learner, training (one process or several),
evaluation and the bundle's files.

Only this module and :mod:`edgeft.train.callbacks` / :mod:`edgeft.train.loaders` import
fastai; nothing downstream of the bundle does.
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
from fastai.callback.progress import ProgressCallback  # noqa: E402
from fastai.learner import Learner  # noqa: E402
from fastai.losses import CrossEntropyLossFlat  # noqa: E402
from fastai.metrics import accuracy, top_k_accuracy  # noqa: E402
from fastai.torch_core import default_device, set_seed  # noqa: E402

from edgeft import plots  # noqa: E402
from edgeft.atomic import sha256_file  # noqa: E402
from edgeft.console import console  # noqa: E402
from edgeft.errors import UserError  # noqa: E402
from edgeft.metrics import classification_metrics  # noqa: E402
from edgeft.models.network import build_model, group_modules, layer_groups, reinit_groups  # noqa: E402
from edgeft.models.weights import pretrained_full_model  # noqa: E402
from edgeft.platform.malloc import keep_large_blocks  # noqa: E402
from edgeft.provenance import provenance  # noqa: E402
from edgeft.train import distributed  # noqa: E402
from edgeft.train.callbacks import (  # noqa: E402
    Diverged,
    FiniteCheck,
    FreezeEval,
    PhaseRecorder,
    add_precision,
)
from edgeft.train.distributed import World  # noqa: E402
from edgeft.train.loaders import class_weights, make_dataloaders  # noqa: E402
from edgeft.train.lrfind import full_lr_find, head_lr_find  # noqa: E402
from edgeft.train.strategy import frozen_eval, run_strategy  # noqa: E402


def _count(params) -> int:
    return int(sum(p.numel() for p in params))


def build_learner(opts, strategy, ds, pp, weights_src, tmpdir: Path, w: World | None = None):
    """Seed everything, build model + DataLoaders, and wrap them in a fastai Learner."""
    w = w or World()
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
    cbs = [PhaseRecorder(phases, history), FiniteCheck(distributed.all_agree)]
    # a linear-probe frozen phase: the body a fixed extractor until it unfreezes
    probe = strategy.name == "discriminative" and opts.frozen_phase == "probe"
    if n_eval:
        cbs.append(FreezeEval(group_modules(model, opts.arch)[:n_eval]))
    elif probe:
        cbs.append(FreezeEval(group_modules(model, opts.arch)[:-1], follow_optimizer=True))
    if opts.channels_last:
        from fastai.callback.channelslast import ChannelsLast

        cbs.append(ChannelsLast())
    learn = Learner(
        dls,
        model,
        loss_func=CrossEntropyLossFlat(weight=weight),
        metrics=metrics,
        splitter=lambda m: layer_groups(m, opts.arch),
        wd=opts.wd,
        train_bn=(n_eval == 0 and not probe),  # fastai's freeze: frozen BN layers train
        cbs=cbs,
        path=tmpdir,
        model_dir=".",
    )
    add_precision(learn, opts.precision)
    if opts.quiet or not w.main:
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *a, **k: None
    return learn, phases, history


def _lr_find(learn, strategy, tmpdir: Path) -> tuple[float, dict]:
    """fastai's lr_find (valley) on the model as its first phase will see it (frozen body for
    head/discriminative: on cached body features, :mod:`edgeft.train.lrfind`), like fastai's
    course recipe. One process only (options refuse it under a launcher)."""
    if strategy.name in ("head", "discriminative"):
        learn.freeze()
        lr, record = head_lr_find(learn, tmpdir)
    else:
        if strategy.name == "freeze":
            learn.freeze_to(strategy.k)
        lr, record = full_lr_find(learn)
    console().print(f"lr_find chose {lr:.2e} (valley) in {record['seconds']:.0f} s")
    return lr, record


def evaluate(model, dl) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and targets over the whole validation split, in order, in FP32,
    in this process alone.

    Not ``learn.get_preds``: under a launcher fastai gathers across processes (its
    ``num_distrib()`` reads ``$WORLD_SIZE``), a ``DistributedDL`` pads the split with
    duplicates, and mixed precision would autocast. The bundle's metrics and reference must
    be what ``edgeft predict`` and the FP32 ONNX compute.
    """
    model.eval()
    probs, targets = [], []
    with torch.no_grad():
        for xb, yb in dl:
            logits = model(xb).as_subclass(torch.Tensor).float()
            probs.append(torch.softmax(logits, dim=1).cpu())
            targets.append(yb.as_subclass(torch.Tensor).cpu())
    return torch.cat(probs).numpy(), torch.cat(targets).numpy()


def _fit(learn, opts, strategy, w: World, backend, records, tmpdir: Path) -> tuple:
    """Train per ``strategy`` (in fastai's distributed context when there are peers);
    returns the LR used, its source, the lr_find record and the training seconds."""
    lr, lr_source, lr_find = opts.lr, "given", None
    if lr == "auto":
        lr, lr_find = _lr_find(learn, strategy, tmpdir)
        lr_source = "lr_find"
        for record in records:  # lr_find's own fit is no phase of the training
            record.clear()
    elif w.distributed and opts.lr_scale == "linear":
        lr, lr_source = lr * w.size, "given x processes (--lr-scale linear)"
    t0 = time.perf_counter()
    try:
        with distributed.distrib_ctx(learn, backend):
            kept = run_strategy(
                learn,
                strategy,
                opts.epochs,
                opts.freeze_epochs,
                lr,
                opts.lr_mult,
                probe=opts.frozen_phase == "probe",
                fallback=opts.fallback,
            )
    except Diverged as exc:
        raise UserError(exc.line) from None
    return lr, lr_source, lr_find, time.perf_counter() - t0, kept


def train(opts, strategy, ds, pp, weights_src, w: World | None = None) -> dict | None:
    """Train per ``strategy``; returns the trained model, records and validation results
    (``None`` on processes other than rank 0, which write nothing).

    Raises:
        UserError: the loss or weights became non-finite, or a peer process was lost.
    """
    w = w or World()
    allocator = keep_large_blocks()  # before the first large activation: see its module
    with tempfile.TemporaryDirectory(prefix="edgeft-learn-") as tmp:
        with distributed.session(w, opts.dist_timeout) as backend:
            distributed.same_everywhere(ds.fingerprint(), "data (split fingerprints differ)")
            learn, phases, history = build_learner(
                opts, strategy, ds, pp, weights_src, Path(tmp), w
            )
            lr, lr_source, lr_find, train_seconds, kept = _fit(
                learn, opts, strategy, w, backend, (phases, history), Path(tmp)
            )
        if not w.main:
            return None
        probs, targets = evaluate(learn.model, learn.dls.valid)
        trainable = [
            p for g in layer_groups(learn.model, opts.arch)[learn.opt.frozen_idx :] for p in g
        ]
        wd = learn.wd if learn.wd is not None else learn.opt.hypers[0].get("wd")
        bs = learn.dls.train.bs
    # Back to the default memory format (after the validation pass, which channels-last
    # makes faster too): the bundle's weights and the ONNX export see the model as built.
    model = learn.model.eval().cpu().to(memory_format=torch.contiguous_format)
    return {
        "model": model,
        "lr": lr,
        "lr_source": lr_source,
        "lr_find": lr_find,
        "wd": float(wd) if wd is not None else None,
        "batch_size": bs,
        "phases": phases,
        "history": history,
        "train_seconds": train_seconds,
        "fallback": kept,
        "params": {"total": _count(model.parameters()), "trainable": _count(trainable)},
        "device": str(default_device()),
        "threads": torch.get_num_threads(),
        "allocator": allocator,
        "backend": backend,
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
