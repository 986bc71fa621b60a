"""Make ``import torchvision`` work next to a CPU build of torch.

torchvision 0.28.0 is published only as a CUDA build. Imported next to the CPU torch
2.13.0 wheel its compiled ops library does not load, and its ``_meta_registrations``
module then fails with ``RuntimeError: operator torchvision::nms does not exist``
(pytorch/vision#9085). The pure-Python parts edgeft uses (model builders, weights API)
work once the two op *schemas* it registers fake kernels for exist. Defining them here,
through ``torch.library``, before anything imports torchvision (fastai and timm import it
too) is enough. ``torchvision.ops.nms`` and ``torchvision.io`` still do not work; edgeft
decodes images with Pillow, as fastai does.

Call :func:`ensure_torchvision` before importing torchvision, fastai or timm. It is a
no-op when the compiled ops are present (a matching torch + torchvision pair).
"""

from __future__ import annotations

import importlib
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIB = None  # keeps the torch.library.Library alive: dropping it unregisters the schemas
_applied = False


def _forget_torchvision() -> None:
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]


def ensure_torchvision():
    """Import torchvision, defining the missing op schemas first when needed.

    A matching torch + torchvision pair imports untouched (defining the schemas there
    would clash with the compiled library), so the workaround is applied only after the
    plain import failed with the known error.

    Returns:
        The imported ``torchvision`` module.
    """
    global _LIB, _applied
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    _forget_torchvision()
    import torch

    _LIB = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS.values():
        _LIB.define(schema)
    _applied = True
    return importlib.import_module("torchvision")


def workaround_applied() -> bool:
    """Whether :func:`ensure_torchvision` had to define the op schemas itself."""
    return _applied
