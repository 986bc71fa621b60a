"""Augmentation presets and class balancing in the fastai DataLoaders."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from edgeft.data import load_dataset
from edgeft.preprocess import Preprocessing
from edgeft.train.finetune import FinetuneOptions, finetune
from edgeft.train.loaders import class_weights, make_dataloaders
from tests.conftest import make_color_dataset

PP = Preprocessing(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _imbalanced(tmp_path):
    root = make_color_dataset(tmp_path / "d", n_per_class=5, size=32, classes=("green", "blue"))
    make_color_dataset(root, n_per_class=40, size=32, classes=("red",))
    return load_dataset(root, valid_pct=0.2, seed=0)


def test_oversample_evens_out_classes(tmp_path):
    ds = _imbalanced(tmp_path)
    assert ds.counts("train") == {"blue": 4, "green": 4, "red": 32}
    torch.manual_seed(0)
    np.random.seed(0)
    dls = make_dataloaders(ds, PP, batch_size=8, aug="none", balance="oversample")
    drawn = Counter()
    for _ in range(20):
        for _, y in dls.train:
            drawn.update(ds.labels[i] for i in y.tolist())
    total = sum(drawn.values())
    assert all(abs(drawn[c] / total - 1 / 3) < 0.06 for c in ds.labels), drawn
    plain = make_dataloaders(ds, PP, batch_size=8, aug="none", balance="none")
    drawn = Counter(ds.labels[i] for _, y in plain.train for i in y.tolist())
    assert drawn["red"] > 2 * (drawn["blue"] + drawn["green"])


def test_weighted_loss(tmp_path):
    ds = _imbalanced(tmp_path)
    w = class_weights(ds)
    assert torch.allclose(w, torch.tensor([40 / (3 * 4), 40 / (3 * 4), 40 / (3 * 32)]))
    res = finetune(
        FinetuneOptions(
            data=ds.root,
            arch="resnet18",
            out=tmp_path / "b",
            pretrained=False,
            strategy="full",
            epochs=1,
            size=(32, 32),
            batch_size=8,
            quiet=True,
            balance="weights",
        )
    )
    assert res.training["balance"] == "weights"


def test_dihedral_only_rotates_and_flips(tmp_path):
    root = make_color_dataset(tmp_path / "d", n_per_class=4, size=32)
    ds = load_dataset(root, valid_pct=0.25, seed=0)
    torch.manual_seed(1)
    dls = make_dataloaders(ds, PP, batch_size=4, aug="dihedral", balance="none")
    plain = make_dataloaders(ds, PP, batch_size=4, aug="none", balance="none")
    # Same items, same order: draw one batch from each with the same shuffle seed.
    torch.manual_seed(5)
    dls.train.rng.seed(5)
    xa, _ = dls.train.one_batch()
    plain.train.rng.seed(5)
    xb, _ = plain.train.one_batch()
    moved = 0
    for a, b in zip(xa, xb, strict=True):
        # a 90-degree rotation or flip permutes pixels: same values, possibly other places
        assert torch.allclose(a.flatten().sort().values, b.flatten().sort().values, atol=1e-4)
        moved += int(not torch.allclose(a, b, atol=1e-4))
    assert moved >= 1


def test_default_aug_changes_colour_dihedral_does_not(tmp_path):
    root = make_color_dataset(tmp_path / "d", n_per_class=8, size=32)
    ds = load_dataset(root, valid_pct=0.25, seed=0)
    torch.manual_seed(0)
    means = {}
    for aug in ("default", "dihedral"):
        dls = make_dataloaders(ds, PP, batch_size=8, aug=aug, balance="none")
        dls.train.rng.seed(3)
        x, _ = dls.train.one_batch()
        means[aug] = x.mean(dim=(1, 2, 3))
    plain = make_dataloaders(ds, PP, batch_size=8, aug="none", balance="none")
    plain.train.rng.seed(3)
    x, _ = plain.train.one_batch()
    assert torch.allclose(means["dihedral"], x.mean(dim=(1, 2, 3)), atol=1e-4)
    assert not torch.allclose(
        means["default"], x.mean(dim=(1, 2, 3)), atol=1e-3
    )  # brightness/contrast
