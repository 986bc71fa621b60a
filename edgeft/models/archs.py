"""The backbones edgeft fine-tunes, and how each is cut into a body and layer groups.

fastai's ``vision_learner`` needs per-arch metadata (where to cut, how to split) and has
none for several torchvision models (MobileNetV2 fails in ``create_body`` with
``StopIteration``; GoogLeNet's aux heads break the head). edgeft therefore keeps its own
table: every arch is cut into a plain ``nn.Sequential`` *body* whose layers are split into
four *layer groups* at resolution changes (stem+early, ..., last stage). The head is
group 5. The same body is rebuilt at predict/export time without fastai.

This module imports nothing heavy; torch/torchvision/timm load when a model is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgeft.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ArchSpec:
    """How to build one backbone.

    Attributes:
        name: edgeft's name for the arch (also the torchvision builder name, except timm ones).
        source: ``"torchvision"`` or ``"timm"``.
        body_attr: attribute of the full model holding the body (``"features"``), or
            ``None`` to take the model's children up to ``body_cut``.
        body_cut: with ``body_attr=None``: how many children to drop from the end.
        groups: body layer groups as ``(start, stop)`` indices into the body Sequential;
            contiguous and covering the whole body.
        nf: channels of the body's output feature map.
        mean, std: the input normalisation the ImageNet weights expect (RGB, 0..1 scale).
        build_kwargs: extra keyword arguments for the builder.
        ignore_keys: checkpoint key prefixes to drop before loading (e.g. aux heads).
        note: why the arch is special, shown in ``edgeft finetune --help``-level docs.
    """

    name: str
    source: str
    body_attr: str | None
    body_cut: int
    groups: tuple[tuple[int, int], ...]
    nf: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    build_kwargs: dict = field(default_factory=dict)
    ignore_keys: tuple[str, ...] = ()
    note: str = ""


def _groups(*bounds: int) -> tuple[tuple[int, int], ...]:
    return tuple(zip(bounds[:-1], bounds[1:], strict=False))


# Group boundaries sit where the feature map halves, so "freeze the first K groups" means
# "keep the K earliest resolutions' filters", as in Yosinski et al.'s transfer experiments.
ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in [
        ArchSpec("resnet18", "torchvision", None, 2, _groups(0, 5, 6, 7, 8), 512),
        ArchSpec("resnet34", "torchvision", None, 2, _groups(0, 5, 6, 7, 8), 512),
        ArchSpec("resnet50", "torchvision", None, 2, _groups(0, 5, 6, 7, 8), 2048),
        ArchSpec("vgg16", "torchvision", "features", 0, _groups(0, 10, 17, 24, 31), 512),
        ArchSpec("vgg16_bn", "torchvision", "features", 0, _groups(0, 14, 24, 34, 44), 512),
        ArchSpec("alexnet", "torchvision", "features", 0, _groups(0, 3, 6, 10, 13), 256),
        ArchSpec(
            "googlenet",
            "torchvision",
            None,
            3,
            _groups(0, 5, 8, 14, 16),
            1024,
            # torchvision's pretrained GoogLeNet re-normalises its input to (x-0.5)/0.5
            # inside forward() (transform_input=True); the cut body skips forward(), so
            # the bundle's preprocessing does it instead.
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            # aux_logits=False: with the aux heads fastai's head gets the wrong channels.
            build_kwargs={"aux_logits": False, "init_weights": False},
            ignore_keys=("aux1.", "aux2."),
            note="built without aux heads; input normalised to [-1, 1] as its weights expect",
        ),
        ArchSpec("mobilenet_v2", "torchvision", "features", 0, _groups(0, 4, 7, 14, 19), 1280),
        ArchSpec("mobilenet_v3_small", "torchvision", "features", 0, _groups(0, 2, 4, 9, 13), 576),
        ArchSpec("mobilenet_v3_large", "torchvision", "features", 0, _groups(0, 4, 7, 13, 17), 960),
        ArchSpec("efficientnet_b0", "torchvision", "features", 0, _groups(0, 3, 4, 6, 9), 1280),
        ArchSpec(
            "efficientnet_lite0",
            "timm",
            None,
            0,
            _groups(0, 4, 5, 7, 11),
            1280,
            note="the edge variant (ReLU6, no squeeze-excite); timm architecture",
        ),
    ]
}


def arch_names() -> list[str]:
    """Names of every supported arch, in table order."""
    return list(ARCHS)


def get_arch(name: str) -> ArchSpec:
    """Look up an arch by name.

    Raises:
        UserError: the name is not supported; the message lists the valid ones.
    """
    try:
        return ARCHS[name]
    except KeyError:
        raise UserError(f"unknown arch {name!r}: choose one of {', '.join(ARCHS)}") from None


HEAD_CHOICES = "fastai (default), linear, fc:N"


def parse_head(head: str) -> tuple[str, int | None]:
    """Parse a ``--head`` value into ``(kind, hidden_units)``.

    Raises:
        UserError: the value is not one of ``fastai``, ``linear``, ``fc:N``.
    """
    if head in ("fastai", "linear"):
        return head, None
    m = re.fullmatch(r"fc:(\d+)", head)
    if m and int(m.group(1)) > 0:
        return "fc", int(m.group(1))
    raise UserError(f"unknown --head {head!r}: use {HEAD_CHOICES}")
