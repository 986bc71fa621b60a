"""The one image loader: every command decodes image files here.

Decoding is bounded: the pixel count is read from the header *before* the pixels are
decoded, and a file larger than :func:`max_pixels` (default 64 megapixels; ``edgeft
--max-pixels N`` or ``$EDGEFT_MAX_PIXELS``) is refused as an :class:`ImageError`, like a
corrupt or truncated file. Callers that read many files (dataset scan, calibration,
parity, bench) skip such files and count them; callers given one file (predict, the
runtime) report one line. A decompression bomb therefore never reaches Pillow's decoder,
and no Pillow exception escapes as a traceback.

This module imports neither torch nor fastai.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeft.errors import UserError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".ppm",
    ".pgm",
)
DEFAULT_MAX_PIXELS = 64_000_000  # an 8000x8000 photo; a 20000x20000 bomb is 400 MP
_limit: list[int | None] = [None]  # set by --max-pixels; None: env or default

# edgeft checks the size itself (check_pixels) before any pixel is decoded, against a limit
# the user can set; Pillow's own fixed check would refuse first, with its own message, at
# twice its 89 MP default -- so it is switched off for this process.
Image.MAX_IMAGE_PIXELS = None


class ImageError(UserError):
    """An image file that cannot be decoded, or is too large to decode safely."""


def set_max_pixels(value: int | None) -> None:
    """Set the largest image (width x height) any command decodes (``None``: the default).

    Raises:
        UserError: ``value`` is not positive.
    """
    if value is not None and value < 1:
        raise UserError(f"--max-pixels must be a positive number of pixels, not {value}")
    _limit[0] = value


def max_pixels() -> int:
    """The current pixel limit: ``--max-pixels``, else ``$EDGEFT_MAX_PIXELS``, else 64 MP."""
    if _limit[0] is not None:
        return _limit[0]
    env = os.environ.get("EDGEFT_MAX_PIXELS", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_MAX_PIXELS


def check_pixels(width: int, height: int, what: str) -> None:
    """Raise :class:`ImageError` when ``what`` (a file or frame) has no pixels or too many."""
    if width < 1 or height < 1:
        raise ImageError(f"{what} is empty ({width}x{height} pixels)")
    limit = max_pixels()
    if width * height > limit:
        raise ImageError(
            f"{what} is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"limit of {limit / 1e6:.0f} (raise it with --max-pixels if the image is genuine)"
        )


def is_image_file(path: Path) -> bool:
    """Whether the file name has an image extension edgeft reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB as training did (greyscale replicated, alpha
    dropped, 16-bit and float greyscale scaled to 8 bits)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # PIL's own I;16 -> RGB conversion clips at 255; X-ray PNGs are often 16-bit.
        arr = (np.asarray(img, dtype=np.uint32) // 257).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path: str | Path, exif_transpose: bool = True) -> Image.Image:
    """Decode an image file fully (within the pixel limit) and convert it to RGB.

    Raises:
        ImageError: the file is missing, not an image, corrupt, or over the pixel limit.
    """
    try:
        with Image.open(path) as im:
            check_pixels(im.width, im.height, f"image {path}")
            im.load()
            if exif_transpose:
                im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except FileNotFoundError:
        raise ImageError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not an image") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {path} refused as a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"cannot decode image {path}: {exc}") from None
    except MemoryError:
        raise ImageError(f"image {path} does not fit in memory") from None
