"""Shared fixtures: real assets by path, hermetic tiny datasets, hardware probes.

Real-data tests read ``$EDGEFT_ASSETS`` (default ``../shared/assets`` beside the repo)
and skip with the reason where it is absent; CI always has it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("EDGEFT_ASSETS", ROOT.parent / "shared" / "assets"))
EUROSAT = ASSETS / "datasets" / "eurosat_rgb_200pc"
CHEST = ASSETS / "datasets" / "chest_xray_pneumonia_224"
IMAGENETTE = ASSETS / "datasets" / "imagenette_224_subset"
MOBILENET_V2_WEIGHTS = ASSETS / "weights" / "mobilenet_v2-b0353104.pth"
LITE0_WEIGHTS = ASSETS / "weights" / "efficientnet-lite0-57934424.pth"

# Imagenette folder (ImageNet wnid) -> ImageNet-1k class index, checked against torchvision's
# category names in test_imagenette_wnids_match_imagenet_names. Note n03888257 (parachute,
# 701): n03888605 is "parallel bars" (702).
IMAGENETTE_TO_IMAGENET = {
    "n01440764": 0,  # tench
    "n02102040": 217,  # English springer
    "n02979186": 482,  # cassette player
    "n03000684": 491,  # chain saw
    "n03028079": 497,  # church
    "n03394916": 566,  # French horn
    "n03417042": 569,  # garbage truck
    "n03425413": 571,  # gas pump
    "n03445777": 574,  # golf ball
    "n03888257": 701,  # parachute
}


def needs_assets(*paths: Path):
    """Skip unless every path exists under the shared assets."""
    missing = [p for p in paths if not p.exists()]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"real assets absent: {missing[0] if missing else ''} "
        "(set EDGEFT_ASSETS to the shared assets folder)",
    )


def pytest_collection_modifyitems(config, items):
    """Skip hardware-marked tests where the hardware is absent, with the reason."""
    probes = {
        "gpu": _gpu_reason,
        "tensorrt": lambda: (
            None if importlib.util.find_spec("tensorrt") else "tensorrt is not installed"
        ),
        "rtx": lambda: (
            None
            if importlib.util.find_spec("tensorrt_rtx")
            else "tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13)"
        ),
        "jetson": lambda: (
            None if Path("/etc/nv_tegra_release").exists() else "not an NVIDIA Jetson"
        ),
        "ssh": lambda: (
            None
            if shutil.which("sshd") or Path("/usr/sbin/sshd").exists()
            else "OpenSSH server not installed (apt-get install openssh-server)"
        ),
    }
    cache: dict[str, str | None] = {}
    for item in items:
        for name, probe in probes.items():
            if name in item.keywords:
                if name not in cache:
                    cache[name] = probe()
                if cache[name]:
                    item.add_marker(pytest.mark.skip(reason=cache[name]))


def _gpu_reason():
    try:
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"
    except ImportError:
        return "torch is not installed"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache (``$TORCH_HOME``) for this test."""
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def hub_with_weights(tmp_path_factory):
    """A torch hub cache holding the real ImageNet checkpoints (symlinked, never copied),
    so pretrained weights resolve through torchvision's own cache lookup."""
    home = tmp_path_factory.mktemp("torch_home")
    ck = home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    for w in (MOBILENET_V2_WEIGHTS, LITE0_WEIGHTS):
        if w.exists():
            (ck / w.name).symlink_to(w)
    return home


@pytest.fixture
def use_hub_weights(hub_with_weights, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(hub_with_weights))
    return hub_with_weights


def make_color_dataset(
    root: Path,
    n_per_class: int = 8,
    size: int = 40,
    seed: int = 0,
    classes=("red", "green", "blue"),
) -> Path:
    """Tiny colour-separable images: each class is noise around one primary colour."""
    rng = np.random.default_rng(seed)
    base = {
        "red": (200, 30, 30),
        "green": (30, 200, 30),
        "blue": (30, 30, 200),
        "yellow": (200, 200, 30),
        "cyan": (30, 200, 200),
        "magenta": (200, 30, 200),
    }
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = np.clip(rng.normal(base[c], 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}_{i:03d}.png")
    return root


def tiny_bundle(
    root: Path, classes=("red", "green", "blue"), n_per_class: int = 10, **opts
) -> Path:
    """A real (tiny) fine-tuned bundle under ``root``: colour images, MobileNetV2 from random
    init at 32 px, one epoch (about 5-10 s). ``opts`` override FinetuneOptions fields."""
    from edgeft.train.finetune import FinetuneOptions, finetune

    data = make_color_dataset(root / "data", n_per_class=n_per_class, size=40, classes=classes)
    settings = dict(
        arch="mobilenet_v2",
        pretrained=False,
        size=(32, 32),
        epochs=1,
        freeze_epochs=0,
        strategy="full",
        batch_size=8,
        quiet=True,
    )
    settings.update(opts)
    return finetune(FinetuneOptions(data=data, out=root / "bundle", **settings)).bundle


def copy_bundle(src: Path, dst: Path) -> Path:
    """A private copy of a bundle that a test may change."""
    shutil.copytree(src, dst)
    return dst


def record_artifact(bundle_path: Path, name: str, record: dict) -> None:
    """Record ``record`` as artifact ``name`` of a bundle, as export commits one (validated,
    under the bundle's lock); tests use it to plant artifacts export would not make."""
    from edgeft.bundle import Bundle
    from edgeft.manifest import ArtifactRecord

    bundle = Bundle.load(bundle_path)
    with bundle.lock():
        bundle.record_artifacts({name: ArtifactRecord(**record)})


@pytest.fixture
def color_data(tmp_path):
    return make_color_dataset(tmp_path / "colors")


def run_cli(*args, env=None, timeout=600, cwd=None):
    """Run ``edgeft`` in a subprocess; returns the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "edgeft", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


def assert_one_line_error(proc, code=2, contains=None):
    """The CLI failed with ``code``, one line on stderr, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("edgeft: error:"), err
    if contains:
        assert contains in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def eurosat_bundle(tmp_path_factory, hub_with_weights):
    """A real bundle: MobileNetV2 with its real ImageNet weights, fine-tuned on EuroSAT-200
    at 64 px for 1 frozen + 1 unfrozen epoch (about 1-2 minutes on 2 cores). Read-only:
    tests that modify a bundle use ``eurosat_bundle_copy``."""
    if not (EUROSAT.exists() and MOBILENET_V2_WEIGHTS.exists()):
        pytest.skip(f"real assets absent under {ASSETS} (set EDGEFT_ASSETS)")
    from edgeft.train.finetune import FinetuneOptions, finetune

    out = tmp_path_factory.mktemp("eurosat") / "bundle"
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(hub_with_weights)
    try:
        finetune(
            FinetuneOptions(
                data=EUROSAT,
                arch="mobilenet_v2",
                out=out,
                size=(64, 64),
                epochs=1,
                freeze_epochs=1,
                batch_size=64,  # the distributed tests train with the same effective batch
                frozen_phase="fastai",  # ... and the same phase (tests/edgeft/test_distributed.py)
                fallback=False,
                quiet=True,
            )
        )
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old
    return out


@pytest.fixture
def eurosat_bundle_copy(eurosat_bundle, tmp_path):
    """A private copy of :func:`eurosat_bundle` that a test may export into or break."""
    return copy_bundle(eurosat_bundle, tmp_path / "bundle")
