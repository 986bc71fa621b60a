"""Training guards: a run whose loss or weights turn non-finite fails with one line and no
bundle; mixed precision really autocasts on the CPU and the bundle stays FP32; options that
cannot work under a launcher are refused up front."""

from __future__ import annotations

import json

import pytest

from edgeft.errors import UserError
from edgeft.platform.cpu import cpu_isa
from edgeft.train.options import FinetuneOptions, precision_problem
from tests.conftest import assert_one_line_error, make_color_dataset, run_cli, tiny_bundle

TINY = ["--arch", "mobilenet_v2", "--no-pretrained", "--size", "32", "--strategy", "full",
        "--epochs", "2", "--freeze-epochs", "0", "--batch-size", "8", "--quiet"]  # fmt: skip


def test_a_diverging_run_fails_with_one_line_and_writes_nothing(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=8, size=32)
    out = tmp_path / "o"
    # --lr inf is refused by the option parser; a huge finite LR makes the loss NaN.
    p = run_cli("finetune", "--data", data, "--out", out, *TINY, "--lr", "1e12")
    line = assert_one_line_error(p, 2, "training diverged in epoch 1")
    assert "not finite" in line and "lower --lr" in line
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d"]  # no bundle, no partial folder


def test_lr_inf_is_refused_before_training(tmp_path):
    p = run_cli("finetune", "--data", tmp_path, "--out", tmp_path / "o", *TINY, "--lr", "inf")
    assert_one_line_error(p, 2, "--lr must be positive and finite")


@pytest.mark.parametrize(
    "precision,cuda,bf16,contains",
    [
        ("fp32", False, False, None),
        ("fp16", True, False, None),
        ("bf16", True, False, None),
        ("bf16", False, True, None),
        ("fp16", False, True, "needs a CUDA GPU"),
        ("bf16", False, False, "no native bf16"),
    ],
)
def test_precision_needs_hardware_that_runs_it(precision, cuda, bf16, contains):
    problem = precision_problem(precision, cuda, bf16)
    assert problem is None if contains is None else contains in problem


def test_device_mixed_precision_autocasts_on_the_cpu():
    """fastai 2.8's MixedPrecision builds autocast('cuda'), a silent no-op on a CPU."""
    import torch
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from torch.utils.data import TensorDataset

    from edgeft.train.callbacks import add_precision

    torch.manual_seed(0)
    ds = TensorDataset(torch.randn(32, 8), torch.randint(0, 2, (32,)))
    dls = DataLoaders.from_dsets(ds, ds, bs=8, device="cpu")
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss())
    add_precision(learn, "bf16")
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    assert torch.bfloat16 in seen
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights FP32


@pytest.mark.skipif(not cpu_isa()["bf16"], reason="this CPU has no native bf16")
def test_bf16_bundle_records_its_precision_and_exports_fp32_onnx(tmp_path):
    import onnx
    import torch

    bundle = tiny_bundle(tmp_path, precision="bf16")
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["training"]["precision"] == "bf16"
    state = torch.load(bundle / "weights.pt")
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    p = run_cli("export", bundle, "--onnx", "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]  # parity against PyTorch checked as always
    model = onnx.load(next(bundle.glob("*.onnx")))
    assert {i.data_type for i in model.graph.initializer} == {onnx.TensorProto.FLOAT}


@pytest.mark.skipif(cpu_isa()["bf16"], reason="this CPU runs bf16 natively")
def test_bf16_without_native_support_is_refused(tmp_path):
    p = run_cli("finetune", "--data", tmp_path, "--out", tmp_path / "o", *TINY, "--precision", "bf16")  # fmt: skip
    assert_one_line_error(p, 2, "no native bf16")


def test_lr_auto_is_refused_under_a_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    opts = FinetuneOptions(data=tmp_path, arch="resnet18", out=tmp_path / "o", lr="auto")
    with pytest.raises(UserError, match="lr_find in one process"):
        opts.validate()


def test_compare_refuses_to_run_under_a_launcher(tmp_path, monkeypatch):
    from edgeft.train.compare import CompareOptions, run_compare

    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=32)
    monkeypatch.setenv("WORLD_SIZE", "2")
    co = CompareOptions(data=data, arch="resnet18", out=tmp_path / "c", strategies=["head"])
    with pytest.raises(UserError, match="starts its own processes"):
        run_compare(co, tmp_path / "c")
