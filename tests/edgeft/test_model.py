"""The plain-torch model: fastai's default head reproduced, every arch's body and groups."""

from __future__ import annotations

import pytest
import torch

from edgeft.errors import UserError
from edgeft.models.archs import ARCHS, get_arch, parse_head
from edgeft.models.network import build_full_model, build_head, build_model, cut_body, layer_groups
from edgeft.platform.tvfix import ensure_torchvision


def test_default_head_is_fastais_create_head():
    ensure_torchvision()
    from fastai.vision.learner import create_head

    torch.manual_seed(0)
    theirs = create_head(64, 5)
    ours = build_head(64, 5, "fastai")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(4, 64, 3, 3)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs] or len(
        ours
    ) == len(theirs)


def test_head_kinds():
    assert parse_head("fc:256") == ("fc", 256)
    lin = build_head(32, 4, "linear")
    assert sum(isinstance(m, torch.nn.Linear) for m in lin) == 1
    fc = build_head(32, 4, "fc:16")
    assert [m.out_features for m in fc if isinstance(m, torch.nn.Linear)] == [16, 4]
    for bad in ("fc:0", "fc", "mlp", "fc:-3"):
        with pytest.raises(UserError, match="--head"):
            parse_head(bad)


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(UserError) as e:
        get_arch("resnet1000")
    assert "mobilenet_v2" in str(e.value) and "efficientnet_lite0" in str(e.value)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_body_channels_and_groups(arch):
    spec = get_arch(arch)
    body = cut_body(spec, build_full_model(spec))
    starts = [a for a, _ in spec.groups]
    stops = [b for _, b in spec.groups]
    assert starts[0] == 0 and stops[-1] == len(body) and starts[1:] == stops[:-1], (
        "groups must tile the body"
    )
    body.eval()
    with torch.no_grad():
        feats = body(torch.randn(1, 3, 64, 64))
    assert feats.shape[1] == spec.nf
    model = build_model(arch, 3)
    groups = layer_groups(model, arch)
    assert len(groups) == len(spec.groups) + 1
    assert all(groups), "every group holds parameters"
    assert sum(len(g) for g in groups) == len(list(model.parameters()))
