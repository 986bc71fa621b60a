"""The numpy/Pillow preprocessing is the training-time validation transform, to the pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeft.preprocess import Preprocessing, crop_box, frame_to_image, load_rgb, preprocess, to_rgb
from tests.conftest import CHEST, EUROSAT, needs_assets

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def fastai_valid_input(path, pp: Preprocessing) -> np.ndarray:
    """Run one image through fastai's own validation pipeline (Resize + ToTensor +
    IntToFloatTensor + Normalize), as edgeft's training DataLoaders do."""
    from edgeft.data import Dataset, Sample
    from edgeft.train.loaders import make_dataloaders

    ds = Dataset(
        root=path.parent,
        layout="test",
        labels=["a", "b"],
        train=[Sample(path, "a"), Sample(path, "b")],
        valid=[Sample(path, "a")],
    )
    dls = make_dataloaders(ds, pp, batch_size=2, aug="none", balance="none")
    xb, _ = dls.valid.one_batch()
    return xb[0].cpu().numpy()


def _synthetic(tmp_path, w, h, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    p = tmp_path / f"img_{w}x{h}_{mode}.png"
    img.save(p)
    return p


@pytest.mark.parametrize("resize", ["crop", "squish"])
@pytest.mark.parametrize(
    "wh,size",
    [((100, 60), (48, 48)), ((60, 100), (32, 40)), ((64, 64), (128, 128)), ((33, 77), (50, 30))],
)
def test_matches_fastai_validation_transform_synthetic(tmp_path, resize, wh, size):
    p = _synthetic(tmp_path, *wh)
    pp = Preprocessing(size=size, resize=resize, **IMAGENET)
    ours = preprocess(p, pp)
    theirs = fastai_valid_input(p, pp)
    assert ours.shape == theirs.shape == (3, *size)
    assert np.abs(ours - theirs).max() < 1e-5


@needs_assets(EUROSAT, CHEST)
@pytest.mark.parametrize("size", [(128, 128), (96, 160)])
def test_matches_fastai_on_real_images(size):
    pp = Preprocessing(size=size, resize="crop", **IMAGENET)
    paths = (
        sorted((EUROSAT / "Forest").glob("*.jpg"))[:3]
        + sorted((CHEST / "test" / "NORMAL").glob("*.jpeg"))[:3]
    )
    for p in paths:
        assert np.abs(preprocess(p, pp) - fastai_valid_input(p, pp)).max() < 1e-5, p


def test_crop_box_is_centred_largest_crop():
    assert crop_box(100, 60, 48, 48) == (20, 0, 80, 60)
    assert crop_box(64, 64, 128, 128) == (0, 0, 64, 64)
    # target aspect 30x50 (h x w) from a 33x77 (w x h) image: full width, centred rows
    left, top, right, bottom = crop_box(33, 77, 30, 50)
    assert (left, right) == (0, 33) and bottom - top == int(33 / 50 * 30)


def test_greyscale_rgba_and_16bit(tmp_path):
    grey = Image.fromarray(np.full((10, 10), 100, np.uint8), "L")
    assert np.asarray(to_rgb(grey))[0, 0].tolist() == [100, 100, 100]
    rgba = Image.fromarray(
        np.dstack([np.full((10, 10, 3), 50, np.uint8), np.zeros((10, 10), np.uint8)]), "RGBA"
    )
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [50, 50, 50]  # alpha dropped, colour kept
    arr16 = np.full((10, 10), 51400, np.uint16)  # 200 * 257
    p = tmp_path / "x16.png"
    Image.fromarray(arr16).save(p)
    assert Image.open(p).mode.startswith("I")
    assert np.asarray(load_rgb(p))[0, 0].tolist() == [200, 200, 200]  # scaled, not clipped at 255


def test_folded_contract_skips_normalisation(tmp_path):
    p = _synthetic(tmp_path, 20, 20)
    pp = Preprocessing(size=(20, 20), **IMAGENET)
    raw = preprocess(p, pp.folded())
    assert raw.min() >= 0 and raw.max() <= 1
    norm = preprocess(p, pp)
    mean = np.array(IMAGENET["mean"], np.float32)[:, None, None]
    std = np.array(IMAGENET["std"], np.float32)[:, None, None]
    assert np.allclose((raw - mean) / std, norm, atol=1e-6)


def test_bgr_frame_equals_file(tmp_path):
    p = _synthetic(tmp_path, 30, 20)
    rgb = np.asarray(Image.open(p).convert("RGB"))
    pp = Preprocessing(size=(16, 16), **IMAGENET)
    from_file = preprocess(p, pp)
    from_bgr = preprocess(np.asarray(frame_to_image(rgb[..., ::-1].copy(), "BGR")), pp)
    assert np.array_equal(from_file, from_bgr)


def test_round_trip_dict():
    pp = Preprocessing(size=(10, 12), resize="squish", **IMAGENET)
    assert Preprocessing.from_dict(pp.to_dict()) == pp
