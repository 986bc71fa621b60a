"""Every arch builds, trains a batch, saves a bundle, and `predict` loads it without fastai."""

from __future__ import annotations

import json
import sys

import pytest

from edgeft.models.archs import ARCHS
from edgeft.predict import predict
from edgeft.train.finetune import FinetuneOptions, finetune
from tests.conftest import LITE0_WEIGHTS, MOBILENET_V2_WEIGHTS, make_color_dataset, run_cli

REAL_WEIGHTS = {"mobilenet_v2": MOBILENET_V2_WEIGHTS, "efficientnet_lite0": LITE0_WEIGHTS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_color_dataset(tmp_path_factory.mktemp("tiny") / "d", n_per_class=4, size=64)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_arch_trains_saves_and_predicts(arch, tiny, tmp_path, hub_with_weights, monkeypatch):
    pretrained = arch in REAL_WEIGHTS and REAL_WEIGHTS[arch].exists()
    if pretrained:
        monkeypatch.setenv("TORCH_HOME", str(hub_with_weights))  # resolved through the hub cache
    res = finetune(
        FinetuneOptions(
            data=tiny,
            arch=arch,
            out=tmp_path / "b",
            strategy="full",
            epochs=1,
            size=(64, 64),
            batch_size=8,
            quiet=True,
            pretrained=pretrained,
        )
    )
    rec = res.training
    assert rec["history"] and rec["history"][0]["train_loss"] > 0  # at least one batch trained
    assert (rec["pretrained"] is not None) == pretrained
    if pretrained:
        assert rec["pretrained"]["kind"] == "cache"
    preds, skipped = predict(res.bundle, [tiny / "red"], top_k=2)
    assert len(preds) == 4 and not skipped
    assert {p.top[0][0] for p in preds} <= {"red", "green", "blue"}


def test_predict_never_imports_fastai(tmp_path, tiny):
    res = finetune(
        FinetuneOptions(
            data=tiny,
            arch="resnet18",
            out=tmp_path / "b",
            strategy="full",
            epochs=1,
            size=(32, 32),
            batch_size=8,
            quiet=True,
            pretrained=False,
        )
    )
    code = (
        "import sys; sys.modules['fastai'] = None\n"  # any fastai import now fails
        "from edgeft.cli import main; main()"
    )
    import subprocess

    p = subprocess.run(
        [sys.executable, "-c", code, "predict", str(res.bundle), str(tiny / "blue"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert (
        len(p.stdout.splitlines()) == 4
        and "label" in json.loads(p.stdout.splitlines()[0])["top"][0]
    )
    assert run_cli("predict", res.bundle, tmp_path / "missing.png").returncode == 2
