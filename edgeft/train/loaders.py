"""fastai DataLoaders over a scanned :class:`~edgeft.data.Dataset`.

Images are decoded by :func:`edgeft.preprocess.load_rgb` (the same code predict and the
runtime use); fastai's ``Resize`` then applies the contract's resize, and on the
validation set this is exactly :func:`edgeft.preprocess.resize_image`.
"""

from __future__ import annotations

from edgeft.data import Dataset, Sample
from edgeft.errors import UserError
from edgeft.platform.tvfix import ensure_torchvision
from edgeft.preprocess import Preprocessing, load_rgb
from edgeft.train.options import AUG_PRESETS, BALANCE_CHOICES  # noqa: E402


def _get_x(s: Sample):
    return load_rgb(s.path)


def _get_y(s: Sample) -> str:
    return s.label


def augmentations(preset: str) -> list:
    """Batch transforms for an augmentation preset (before normalisation).

    ``default`` is fastai's ``aug_transforms()`` (horizontal flip, small rotation, zoom,
    warp, brightness/contrast). ``dihedral`` is the 8 rotations by 90 degrees and flips,
    with no colour change (fundus images, satellite tiles, X-rays where intensity is
    diagnostic). ``none`` trains on the resized images as they are.
    """
    ensure_torchvision()
    from fastai.vision.augment import Dihedral, aug_transforms

    if preset == "default":
        return aug_transforms()
    if preset == "dihedral":
        return [Dihedral(p=1.0)]
    if preset == "none":
        return []
    raise UserError(f"unknown --aug {preset!r}: use one of {', '.join(AUG_PRESETS)}")


def make_dataloaders(
    ds: Dataset, pp: Preprocessing, batch_size: int, aug: str, balance: str, num_workers: int = 0
):
    """Build fastai ``DataLoaders`` (train shuffled by the global seed, valid in order)."""
    ensure_torchvision()
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import IndexSplitter, Normalize
    from fastai.vision.augment import Resize, ResizeMethod
    from fastai.vision.core import imagenet_stats  # noqa: F401  (registers PIL types)
    from fastai.vision.data import ImageBlock

    if balance not in BALANCE_CHOICES:
        raise UserError(f"unknown --balance {balance!r}: use one of {', '.join(BALANCE_CHOICES)}")
    items = list(ds.train) + list(ds.valid)
    valid_idx = list(range(len(ds.train), len(items)))
    bs = min(batch_size, len(ds.train))
    if bs < 2:
        raise UserError("need at least 2 training images for a batch")
    method = ResizeMethod.Crop if pp.resize == "crop" else ResizeMethod.Squish
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=ds.labels)),
        get_x=_get_x,
        get_y=_get_y,
        splitter=IndexSplitter(valid_idx),
        item_tfms=Resize((pp.size[0], pp.size[1]), method=method),
        batch_tfms=[*augmentations(aug), Normalize.from_stats(list(pp.mean), list(pp.std))],
    )
    kwargs = dict(bs=bs, num_workers=num_workers)
    if balance == "oversample":
        import fastai.callback.data  # noqa: F401  (patches DataBlock.weighted_dataloaders)

        counts = ds.counts("train")
        # Each training image is drawn with probability 1/count(its class): classes even out.
        # fastai indexes the weights by item and keeps the training split's.
        wgts = [1.0 / counts[s.label] for s in ds.train] + [1.0] * len(ds.valid)
        return block.weighted_dataloaders(items, wgts=wgts, **kwargs)
    return block.dataloaders(items, **kwargs)


def class_weights(ds: Dataset):
    """Loss weights ``n / (C * count)`` per class, for ``--balance weights``."""
    import torch

    counts = ds.counts("train")
    n, c = sum(counts.values()), len(counts)
    return torch.tensor([n / (c * counts[label]) for label in ds.labels], dtype=torch.float32)
