"""The bundle's preprocessing contract, implemented once in numpy and Pillow.

Training (fastai), ``predict``, export parity checks, INT8 calibration, ``bench`` and the
camera app all turn an image into model input through this module, so a deployed model
sees exactly what the trained one saw. It imports neither torch nor fastai.

The contract (``bundle.json`` → ``preprocessing``), applied in this order:

1. decode with Pillow, apply the EXIF orientation, convert to RGB (greyscale is
   replicated, alpha is dropped, 16-bit greyscale is scaled to 8 bits);
2. resize to ``size`` (height, width) with ``interpolation``: ``squish`` resizes the whole
   image, ``crop`` takes the largest centred crop of the target aspect ratio first
   (fastai's ``Resize`` on the validation set, reproduced to the pixel);
3. ``float32``, scaled by 1/255 to 0..1;
4. ``(x - mean) / std`` per channel, unless the exported graph does it
   (``normalize_in_graph``);
5. channels first: ``(3, H, W)``, batched as ``NCHW``.

``tests/test_preprocess.py`` pins steps 1-5 against fastai's own validation pipeline.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from PIL import Image
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from edgeft.errors import UserError
from edgeft.images import ImageError, is_image_file, load_rgb, to_rgb

__all__ = ["ImageError", "Preprocessing", "is_image_file", "load_rgb", "to_rgb"]

RESIZE_METHODS = ("crop", "squish")
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


_Side = Annotated[int, Field(gt=0, le=16384)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Std = Annotated[float, Field(gt=0, allow_inf_nan=False)]


@dataclass(config=ConfigDict(extra="ignore"))
class Preprocessing:
    """How an image becomes model input; stored in ``bundle.json`` (validated on load:
    positive sizes, finite mean, positive finite std, known methods)."""

    size: tuple[_Side, _Side]  # (height, width)
    mean: tuple[_Finite, _Finite, _Finite]
    std: tuple[_Std, _Std, _Std]
    resize: Literal["crop", "squish"] = "crop"
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    channel_order: Literal["RGB"] = "RGB"
    value_range: tuple[_Finite, _Finite] = (0.0, 1.0)
    layout: Literal["NCHW"] = "NCHW"
    normalize_in_graph: bool = False
    exif_transpose: bool = True
    notes: list[str] = field(
        default_factory=lambda: [
            "greyscale replicated to RGB, alpha dropped, 16-bit greyscale scaled to 8 bits",
            "crop: largest centred crop of the target aspect ratio, then resize (fastai Resize, validation)",
        ]
    )

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("size", "mean", "std", "value_range"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """Validate a stored contract (unknown keys are ignored).

        Raises:
            UserError: one line naming the first invalid field.
        """
        from pydantic import ValidationError

        from edgeft.errors import validation_message

        try:
            return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        except ValidationError as exc:
            raise UserError(validation_message(exc, "preprocessing")) from None

    def folded(self) -> Preprocessing:
        """The contract a graph with mean/std folded in expects (only resize and 0..1)."""
        d = self.to_dict()
        d["normalize_in_graph"] = True
        return Preprocessing.from_dict(d)


def crop_box(orig_w: int, orig_h: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """The centred crop fastai's ``Resize(method='crop')`` takes on the validation set."""
    # fastai: m = the smaller of w/W and h/H; crop int(m*W) x int(m*H) at int(0.5*slack).
    m = orig_w / out_w if orig_w / out_w < orig_h / out_h else orig_h / out_h
    cw, ch = int(m * out_w), int(m * out_h)
    left, top = int(0.5 * (orig_w - cw)), int(0.5 * (orig_h - ch))
    return left, top, min(left + cw, orig_w), min(top + ch, orig_h)


def resize_image(img: Image.Image, pp: Preprocessing) -> Image.Image:
    """Step 2 of the contract: crop (if ``resize='crop'``) and resize to ``pp.size``."""
    out_h, out_w = pp.size
    if pp.resize == "crop":
        img = img.crop(crop_box(img.width, img.height, out_h, out_w))
    if img.size != (out_w, out_h):
        img = img.resize((out_w, out_h), _RESAMPLE[pp.interpolation])
    return img


@functools.lru_cache(maxsize=32)
def _table(mean: tuple, std: tuple, normalize: bool) -> np.ndarray:
    v = np.arange(256, dtype=np.float32) / np.float32(255.0)
    lut = np.repeat(v[None, :], 3, axis=0)
    if normalize:
        lut = (lut - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    lut = np.ascontiguousarray(lut, dtype=np.float32)
    lut.flags.writeable = False
    return lut


def value_table(pp: Preprocessing, normalize: bool) -> np.ndarray:
    """Steps 3-4 for every possible byte value: ``(3, 256)`` float32.

    Computed with the contract's float32 operations in its order (``/255``, ``-mean``,
    ``/std``) on each of the 256 values, so looking pixels up in it gives exactly the
    numbers computing them pixel by pixel would, several times faster.
    """
    return _table(pp.mean, pp.std, normalize)


def bytes_to_input(rgb: np.ndarray, table: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Steps 3-5 for an ``H x W x 3`` uint8 array through a :func:`value_table`."""
    out = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
    for c in range(3):
        np.take(table[c], rgb[:, :, 2 - c if bgr else c], out=out[c])
    return out


def image_to_input(
    img: Image.Image, pp: Preprocessing, normalize: bool | None = None
) -> np.ndarray:
    """Steps 2-5 for one RGB Pillow image: returns float32 ``(3, H, W)``.

    Args:
        img: an RGB image (see :func:`to_rgb`).
        pp: the contract.
        normalize: apply mean/std; defaults to ``not pp.normalize_in_graph``.
    """
    if normalize is None:
        normalize = not pp.normalize_in_graph
    rgb = np.asarray(resize_image(img, pp), dtype=np.uint8)
    return bytes_to_input(rgb, value_table(pp, normalize))


def frame_to_image(frame: np.ndarray, channel_order: str = "BGR") -> Image.Image:
    """A camera frame (``H x W x 3`` uint8, OpenCV's BGR by default) as an RGB Pillow image."""
    if frame.ndim == 2:
        return Image.fromarray(frame).convert("RGB")
    if channel_order.upper() == "BGR":
        frame = frame[..., 2::-1]
    return Image.fromarray(np.ascontiguousarray(frame[..., :3]), mode="RGB")


def preprocess(item, pp: Preprocessing, normalize: bool | None = None) -> np.ndarray:
    """Turn a path, a Pillow image or an RGB ``HxWx3`` uint8 array into ``(3, H, W)`` input."""
    if isinstance(item, (str, Path)):
        img = load_rgb(item, pp.exif_transpose)
    elif isinstance(item, Image.Image):
        img = to_rgb(item)
    elif isinstance(item, np.ndarray):
        img = frame_to_image(item, "RGB")
    else:
        raise TypeError(f"cannot preprocess {type(item).__name__}")
    return image_to_input(img, pp, normalize)


def preprocess_batch(items, pp: Preprocessing, normalize: bool | None = None) -> np.ndarray:
    """Stack :func:`preprocess` of several items into one ``NCHW`` float32 batch."""
    return np.stack([preprocess(it, pp, normalize) for it in items])


def onnx_metadata_preprocessing(metadata: dict | None) -> dict | None:
    """The ``edgeft.preprocessing`` contract from ONNX ``metadata_props`` (JSON text) if any."""
    value = (metadata or {}).get("edgeft.preprocessing")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def artifact_preprocessing(
    bundle, record, metadata: dict | None = None
) -> tuple[Preprocessing, str, list[str]]:
    """The preprocessing a device applies for an artifact: the contract the artifact itself
    carries (its record's ``preprocessing``, else the ``edgeft.preprocessing`` entry of the
    ONNX file's metadata, see :meth:`edgeft.runners.base.Runner.metadata`), else the
    bundle's. Bench and the runtime both use this, so a wrong record shows up in bench as
    the accuracy drop a device would see.

    Returns:
        ``(pp, source, differs)``: the contract, where it came from (``"artifact record"``,
        ``"ONNX metadata"`` or ``"bundle"``), and the fields in which it differs from the
        bundle's.
    """
    base = bundle.preprocessing
    own = (
        record.get("preprocessing")
        if isinstance(record, dict)
        else getattr(record, "preprocessing", None)
    )
    source = "artifact record"
    if not isinstance(own, dict):
        own, source = onnx_metadata_preprocessing(metadata), "ONNX metadata"
    if not isinstance(own, dict):
        return base, "bundle", []
    own = {k: v for k, v in own.items() if k != "normalize_in_graph"}  # the record says that
    merged = Preprocessing.from_dict({**base.to_dict(), **own})
    differs = [
        k
        for k in ("size", "mean", "std", "resize", "interpolation", "channel_order", "value_range")
        if getattr(merged, k) != getattr(base, k)
    ]
    return merged, source, differs
