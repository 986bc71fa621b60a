"""Labelled images through a bundle's preprocessing, decoded batch by batch in bounded memory.

Export checks, the INT8 search and the bench ladder run every form of a model over the same
labelled images. Holding all of them decoded grows with the data set (1.9 GB for 4,000
images at 128 px; a 27,000-image EuroSAT validation at 224 px would not fit in 24 GB), so
:class:`LabelledImages` decodes in fixed chunks and keeps decoded chunks only up to a byte
budget (``$EDGEFT_IMAGE_CACHE_MB``, default 256): the first pass learns which files are
readable (unreadable ones are skipped and counted), later passes reuse cached chunks and
decode the rest again. Peak memory is the budget plus one chunk, whatever the image count.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np

from edgeft.errors import UserError
from edgeft.images import ImageError, load_rgb
from edgeft.preprocess import Preprocessing, image_to_input

CHUNK = 32


def cache_budget() -> int:
    """Bytes of decoded images kept between passes (``$EDGEFT_IMAGE_CACHE_MB``, default 256)."""
    env = os.environ.get("EDGEFT_IMAGE_CACHE_MB", "")
    return (int(env) if env.isdigit() else 256) << 20


class LabelledImages:
    """Readable ``(path, label)`` images, preprocessed (normalised) on demand.

    Attributes:
        targets: class index of every readable image, in order.
        paths: their paths.
        skipped: ``(path, reason)`` of the files that could not be read.
        source: where the images came from (for records and reports).
        unknown: class folders that are not labels of the bundle -> image count.
    """

    def __init__(
        self, samples, labels: list[str], pp: Preprocessing, progress: Callable | None = None
    ):
        self.pp = pp
        self.source, self.unknown = "", {}
        self._budget, self._cache, self._held = cache_budget(), OrderedDict(), 0
        index = {lb: i for i, lb in enumerate(labels)}
        self.paths, targets, self.skipped = [], [], []
        chunk: list[np.ndarray] = []
        for path, label in samples:
            try:
                chunk.append(self._decode(path))
                self.paths.append(str(path))
                targets.append(index[label])
            except ImageError as exc:
                self.skipped.append((str(path), str(exc)))
            if len(chunk) == CHUNK:
                self._keep(len(self.paths) // CHUNK - 1, np.stack(chunk))
                chunk = []
            if progress:
                progress()
        if chunk:
            self._keep((len(self.paths) - 1) // CHUNK, np.stack(chunk))
        if not self.paths:
            e = self.skipped[0][1] if self.skipped else "-"
            raise UserError(
                f"none of the {len(self.skipped)} labelled images could be read (e.g. {e})"
            )
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, path) -> np.ndarray:
        return image_to_input(load_rgb(path, self.pp.exif_transpose), self.pp, normalize=True)

    def _keep(self, i: int, x: np.ndarray) -> None:
        if self._held + x.nbytes <= self._budget:
            self._cache[i] = x
            self._held += x.nbytes

    def _chunk(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        return np.stack([self._decode(p) for p in self.paths[i * CHUNK : (i + 1) * CHUNK]])

    def batches(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        """The images as normalised float32 ``NCHW`` batches of ``size``, in order."""
        pending: list[np.ndarray] = []
        held = 0
        for i in range(-(-len(self) // CHUNK)):
            pending.append(self._chunk(i))
            held += len(pending[-1])
            while held >= size:
                x = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield x[:size]
                rest = x[size:]
                pending, held = ([rest] if len(rest) else []), len(rest)
        if held:
            yield np.concatenate(pending)

    def head(self, n: int) -> np.ndarray:
        """The first ``n`` images as one batch (latency timing needs only a few)."""
        return next(self.batches(max(1, min(n, len(self)))))

    @property
    def x(self) -> np.ndarray:
        """Every image as one array: memory grows with the count; for small sets only."""
        return np.concatenate(list(self.batches()))


def load_labelled(samples, labels: list[str], pp: Preprocessing, progress=None) -> LabelledImages:
    """Decode and preprocess ``(path, label)`` pairs (see :class:`LabelledImages`).

    Raises:
        UserError: no image could be read.
    """
    return LabelledImages(samples, labels, pp, progress)
