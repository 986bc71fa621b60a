"""Build the deployable classifier: a backbone body plus a head, as plain torch modules.

The module trained by fastai *is* the module saved in the bundle and rebuilt for
predict/export: ``nn.Sequential(body, head)``, with fastai's default head reproduced
layer for layer (same ``state_dict`` keys, same init) in plain torch, so loading a bundle
never needs fastai. ``tests/test_model.py`` pins the head against fastai's own
``create_head``.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeft.models.archs import ArchSpec, get_arch, parse_head
from edgeft.platform.tvfix import ensure_torchvision


class AdaptiveConcatPool2d(nn.Module):
    """Concatenate global max and average pooling (fastai's layer, same order: max, avg)."""

    def __init__(self):
        super().__init__()
        self.ap = nn.AdaptiveAvgPool2d(1)
        self.mp = nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        return torch.cat([self.mp(x), self.ap(x)], 1)


def _bn1d(n: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(n)
    # fastai's BatchNorm(): weight 1, bias 1e-3.
    bn.weight.data.fill_(1.0)
    bn.bias.data.fill_(1e-3)
    return bn


def build_head(nf: int, n_out: int, head: str = "fastai") -> nn.Sequential:
    """Build a classification head for a body with ``nf`` output channels.

    Args:
        nf: channels of the body's feature map.
        n_out: number of classes.
        head: ``fastai`` (fastai's ``create_head`` default: concat pooling, BN, dropout
            0.25, 512 units, ReLU, BN, dropout 0.5, output), ``linear`` (average pooling
            and one linear layer: a linear classifier on CNN features) or ``fc:N``
            (average pooling, N units + ReLU + dropout 0.5, output; the seeds' VGG16 head).
    """
    kind, hidden = parse_head(head)
    if kind == "fastai":
        layers = [
            AdaptiveConcatPool2d(),
            nn.Flatten(),
            _bn1d(2 * nf),
            nn.Dropout(0.25),
            nn.Linear(2 * nf, 512, bias=False),
            nn.ReLU(inplace=True),
            _bn1d(512),
            nn.Dropout(0.5),
            nn.Linear(512, n_out, bias=False),
        ]
    elif kind == "linear":
        layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(nf, n_out)]
    else:
        layers = [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(nf, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, n_out),
        ]
    head_mod = nn.Sequential(*layers)
    # fastai's apply_init(head, kaiming_normal_): Linear weights kaiming, biases zero.
    for m in head_mod.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return head_mod


def build_full_model(spec: ArchSpec) -> nn.Module:
    """Build the arch's complete ImageNet model (1000 classes), randomly initialised."""
    if spec.source == "timm":
        from edgeft.models.lite0 import LITE0_TIMM_NAME

        ensure_torchvision()  # timm imports torchvision
        import timm

        return timm.create_model(LITE0_TIMM_NAME, pretrained=False, **spec.build_kwargs)
    tv = ensure_torchvision()
    return tv.models.get_model(spec.name, weights=None, **spec.build_kwargs)


def cut_body(spec: ArchSpec, full: nn.Module) -> nn.Sequential:
    """Cut the pooling and classifier off a full model, leaving a flat ``nn.Sequential``."""
    if spec.source == "timm":
        return nn.Sequential(full.conv_stem, full.bn1, *full.blocks, full.conv_head, full.bn2)
    if spec.body_attr:
        return nn.Sequential(*getattr(full, spec.body_attr))
    children = list(full.children())
    return nn.Sequential(*children[: len(children) - spec.body_cut])


def build_model(arch: str, n_out: int, head: str = "fastai", full: nn.Module | None = None):
    """Build ``nn.Sequential(body, head)`` for ``arch``.

    Args:
        arch: an arch name from :mod:`edgeft.models.archs`.
        n_out: number of classes.
        head: head kind, see :func:`build_head`.
        full: a full ImageNet model whose body to use (e.g. with pretrained weights
            loaded); a randomly initialised one is built when omitted.
    """
    spec = get_arch(arch)
    body = cut_body(spec, full if full is not None else build_full_model(spec))
    return nn.Sequential(body, build_head(spec.nf, n_out, head))


def layer_groups(model: nn.Sequential, arch: str) -> list[list[nn.Parameter]]:
    """Parameters per layer group: the arch's body groups, then the head.

    This is the splitter fastai's discriminative learning rates and ``freeze_to`` use.
    """
    spec = get_arch(arch)
    body, head = model[0], model[1]
    groups = [[p for layer in body[a:b] for p in layer.parameters()] for a, b in spec.groups]
    groups.append(list(head.parameters()))
    return groups


def group_modules(model: nn.Sequential, arch: str) -> list[nn.Module]:
    """The modules of each layer group (body slices, then the head)."""
    spec = get_arch(arch)
    return [model[0][a:b] for a, b in spec.groups] + [model[1]]


def reinit_groups(model: nn.Sequential, arch: str, keep: int) -> None:
    """Re-initialise every body group from ``keep`` on (their pretrained weights are
    discarded), as in Yosinski et al.'s transfer experiments where only the first n layers
    are copied. Uses each layer's ``reset_parameters`` (PyTorch's default init; BatchNorm
    statistics are reset too)."""
    for group in group_modules(model, arch)[keep:-1]:
        for m in group.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
