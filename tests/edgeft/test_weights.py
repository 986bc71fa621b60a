"""Pretrained weights resolve the way torchvision does, and load right (ImageNet top-1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeft.errors import UserError
from edgeft.models.archs import get_arch
from edgeft.models.weights import pretrained_full_model, read_checkpoint, resolve_weights
from edgeft.preprocess import Preprocessing, preprocess
from tests.conftest import (
    IMAGENETTE,
    IMAGENETTE_TO_IMAGENET,
    LITE0_WEIGHTS,
    MOBILENET_V2_WEIGHTS,
    needs_assets,
)


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_cached_variant_is_found_in_torch_hub_cache(use_hub_weights):
    # DEFAULT is IMAGENET1K_V2; only V1's file is cached: resolution falls back to it.
    src = resolve_weights("mobilenet_v2", offline=True)
    assert src.kind == "cache" and src.tag == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert src.path.endswith("mobilenet_v2-b0353104.pth")
    assert src.sha256.startswith("b0353104")  # torchvision's file names carry the hash prefix
    assert resolve_weights("mobilenet_v2", "IMAGENET1K_V1", offline=True).tag.endswith(
        "IMAGENET1K_V1"
    )


def test_offline_error_names_file_and_folder(torch_home):
    with pytest.raises(UserError) as e:
        resolve_weights("resnet50", offline=True)
    msg = str(e.value)
    assert "resnet50-11ad3fa6.pth" in msg and str(torch_home / "hub" / "checkpoints") in msg
    assert "\n" not in msg


def test_unknown_variant_and_missing_file(torch_home):
    with pytest.raises(UserError, match="has no weights 'IMAGENET9K'"):
        resolve_weights("resnet18", "IMAGENET9K", offline=True)
    with pytest.raises(UserError, match="does not exist"):
        resolve_weights("resnet18", "/nope/weights.pth")


def test_local_checkpoint_wrappers_and_wrong_arch(tmp_path):
    from edgeft.models.network import build_full_model

    sd = build_full_model(get_arch("resnet18")).state_dict()
    p = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, p)
    assert set(read_checkpoint(p)) == set(sd)
    src = resolve_weights("resnet18", str(p))
    model = pretrained_full_model("resnet18", src)
    assert torch.equal(model.state_dict()["fc.weight"], sd["fc.weight"])
    with pytest.raises(UserError, match="does not fit resnet34"):
        pretrained_full_model("resnet34", src)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        read_checkpoint(tmp_path / "junk.pth")


def _imagenet_top1(arch, mean, std, per_class=25):
    src = resolve_weights(arch, offline=True)
    model = pretrained_full_model(arch, src).eval()
    pp = Preprocessing(size=(224, 224), mean=mean, std=std, resize="crop")
    xs, ys = [], []
    for wnid, idx in sorted(IMAGENETTE_TO_IMAGENET.items()):
        for f in sorted((IMAGENETTE / "val" / wnid).iterdir())[:per_class]:
            xs.append(preprocess(f, pp))
            ys.append(idx)
    with torch.inference_mode():
        pred = torch.cat(
            [
                model(torch.from_numpy(np.stack(xs[i : i + 25]))).argmax(1)
                for i in range(0, len(xs), 25)
            ]
        )
    return float((pred.numpy() == np.array(ys)).mean()), src


@needs_assets(MOBILENET_V2_WEIGHTS, IMAGENETTE)
def test_mobilenet_v2_imagenet_top1_through_the_cache(use_hub_weights):
    spec = get_arch("mobilenet_v2")
    top1, src = _imagenet_top1("mobilenet_v2", spec.mean, spec.std)
    # 68.6% on all 500 images (torchvision: 71.9% on ImageNet); random weights: ~0.1%.
    assert src.kind == "cache" and top1 >= 0.60, top1


@needs_assets(LITE0_WEIGHTS, IMAGENETTE)
def test_efficientnet_lite0_imagenet_top1_through_the_cache(use_hub_weights):
    from edgeft.models.lite0 import LITE0_MEAN, LITE0_STD

    top1, src = _imagenet_top1("efficientnet_lite0", LITE0_MEAN, LITE0_STD)
    assert src.kind == "cache" and top1 >= 0.64, top1  # 72.2% on all 500 images
