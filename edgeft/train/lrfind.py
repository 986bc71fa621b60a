"""``--lr auto``: fastai's LR range test (``lr_find``, valley) at a fraction of its cost.

The range test runs on the model as its first phase will train it. With the body frozen
(head, discriminative) only the head's input changes nothing from step to step but the
augmentation, so the body's features of a few hundred augmented training images are
computed once and the range test runs fastai's ``lr_find`` on the head alone over them.
Measured on EuroSAT-200 at 128 px, MobileNetV2, 2-core EPYC (``recipe_sweep.py``, variants
``lr-auto`` and ``lr-auto-fastai``): 5.0 s against 26.9 s for fastai's ``lr_find`` on the
same frozen model (and 147 s for the old batch-64 recipe on a 2-core Xeon), valley
1.0e-3 against 8.3e-4, and the same final accuracy (93.75%) from either LR.
Strategies that train body groups from the start use fastai's ``lr_find`` on the whole
model, as before.

Imports fastai: only :mod:`edgeft.train.training` imports this module.
"""

from __future__ import annotations

import copy
import time

from edgeft.platform.tvfix import ensure_torchvision

ensure_torchvision()  # before fastai imports torchvision

import fastai.callback.schedule  # noqa: E402,F401  (patches Learner.lr_find)
import torch  # noqa: E402
from fastai.data.core import DataLoaders  # noqa: E402
from fastai.data.load import DataLoader  # noqa: E402
from fastai.learner import Learner  # noqa: E402

FEATURE_IMAGES = 512  # body features computed once: enough batches for 100 range-test steps
NUM_IT = 100  # fastai's default number of range-test steps


def _features(learn, n_images: int) -> torch.utils.data.TensorDataset:
    """Body features of up to ``n_images`` augmented training images (body in eval mode)."""
    body = learn.model[0]
    was_training = body.training
    body.eval()
    xs, ys, seen = [], [], 0
    with torch.no_grad():
        for xb, yb in learn.dls.train:
            xs.append(body(xb).as_subclass(torch.Tensor).contiguous())
            ys.append(yb.as_subclass(torch.Tensor))
            seen += len(yb)
            if seen >= n_images:
                break
    body.train(was_training)
    return torch.utils.data.TensorDataset(torch.cat(xs), torch.cat(ys))


def head_lr_find(learn, tmpdir, n_images: int = FEATURE_IMAGES) -> tuple[float, dict]:
    """fastai's ``lr_find`` (valley) on a copy of the head over cached body features.

    Returns:
        the suggested LR and a record (valley, seconds, images, steps, method).
    """
    t0 = time.perf_counter()
    feats = _features(learn, n_images)
    bs = min(learn.dls.train.bs, len(feats) // 2)
    # One epoch of NUM_IT batches (the features drawn again and again): fastai's per-epoch
    # overhead would otherwise dominate the few milliseconds each head step takes.
    cycled = torch.utils.data.Subset(feats, [i % len(feats) for i in range(NUM_IT * bs)])
    dls = DataLoaders(
        DataLoader(cycled, bs=bs, shuffle=True, drop_last=True, device=learn.dls.device),
        DataLoader(feats, bs=bs, device=learn.dls.device),
    )
    head = copy.deepcopy(learn.model[1])
    probe = Learner(
        dls, head, loss_func=learn.loss_func, opt_func=learn.opt_func, wd=learn.wd, path=tmpdir
    )
    with probe.no_bar(), probe.no_logging():
        sugg = probe.lr_find(num_it=NUM_IT, show_plot=False)
    lr = float(sugg.valley)
    return lr, {
        "valley": lr,
        "seconds": time.perf_counter() - t0,
        "method": "head over cached body features",
        "images": len(feats),
        "steps": NUM_IT,
    }


def full_lr_find(learn) -> tuple[float, dict]:
    """fastai's ``lr_find`` (valley) on the learner as it is (no finite check during it: the
    test drives the LR up until the loss explodes, then restores the weights)."""
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging(), learn.removed_cbs(learn.finite_check):
        sugg = learn.lr_find(show_plot=False)
    lr = float(sugg.valley)
    return lr, {"valley": lr, "seconds": time.perf_counter() - t0, "method": "fastai lr_find"}
