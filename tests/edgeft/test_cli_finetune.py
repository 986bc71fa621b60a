"""`edgeft finetune` / `predict` from the command line: the happy path on tiny data, and every
user error as one clear line, a non-zero exit, no traceback and nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import (
    MOBILENET_V2_WEIGHTS,
    assert_one_line_error,
    make_color_dataset,
    needs_assets,
    run_cli,
)

TINY = ["--size", "32", "--epochs", "1", "--freeze-epochs", "0", "--batch-size", "8", "--quiet"]


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_finetune_then_predict_on_tiny_data(tmp_path):
    # What holds on any CPU (issue 14.8): a recipe with a margin -- real ImageNet features
    # and a head trained on colour-separable images (a random-init network's one epoch
    # learned "red" on an AMD EPYC and not on an Intel Xeon) -- and predict reproducing the
    # bundle's own recorded validation predictions, whatever they are.
    data = make_color_dataset(tmp_path / "d", n_per_class=20, size=32)
    out = tmp_path / "bundle"
    p = run_cli(
        "finetune",
        "--data",
        data,
        "--arch",
        "mobilenet_v2",
        "--weights",
        MOBILENET_V2_WEIGHTS,
        "--out",
        out,
        "--strategy",
        "head",
        "--epochs",
        "2",
        "--lr",
        "1e-2",
        "--size",
        "32",
        "--batch-size",
        "16",
        "--quiet",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["labels"] == ["blue", "green", "red"]
    for f in (
        "weights.pt",
        "split.json",
        "reference.npz",
        "confusion_matrix.png",
        "training_curves.png",
    ):
        assert (out / f).is_file(), f
    assert not list(tmp_path.glob(".bundle.partial-*"))
    p = run_cli("predict", out, data / "red", "--json", "--top-k", "2")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == 20 and all(len(r["top"]) == 2 for r in rows)
    assert all(t["label"] in manifest["labels"] for r in rows for t in r["top"])
    assert sum(r["top"][0]["label"] == "red" for r in rows) >= 16  # colour-separable classes
    import numpy as np

    ref = np.load(out / "reference.npz")
    split = json.loads((out / "split.json").read_text())
    valid = [str(data / rel) for rel in ref["paths"]]
    assert valid == [str(data / p) for p, _ in split["valid"]]
    p = run_cli("predict", out, *valid, "--json", "--top-k", "1")
    got = [
        manifest["labels"].index(json.loads(ln)["top"][0]["label"]) for ln in p.stdout.splitlines()
    ]
    assert got == list(ref["probs"].argmax(1))  # predict reproduces training's own answers


def test_not_quiet_prints_counts_metrics_and_wall_time(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=6, size=32)
    p = run_cli(
        "finetune",
        "--data",
        data,
        "--arch",
        "resnet18",
        "--out",
        tmp_path / "b",
        "--no-pretrained",
        *[a for a in TINY if a != "--quiet"],
    )
    assert p.returncode == 0, p.stderr[-2000:]
    for text in ("Images per class", "Validation metrics", "wall time"):
        assert text in p.stdout, p.stdout[-3000:]


@pytest.mark.parametrize(
    "case,contains",
    [
        ("missing", "does not exist"),
        ("empty", "holds no class folders"),
        ("one_class", "only one class"),
        ("empty_class", "holds no files"),
        ("all_corrupt", "no readable images"),
    ],
)
def test_bad_data(tmp_path, case, contains):
    data = tmp_path / "d"
    if case == "empty":
        data.mkdir()
    elif case == "one_class":
        make_color_dataset(data, classes=("red",))
    elif case == "empty_class":
        make_color_dataset(data)
        (data / "zebra").mkdir()
    elif case == "all_corrupt":
        for c in ("a", "b"):
            (data / c).mkdir(parents=True)
            (data / c / "x.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    p = run_cli(
        "finetune", "--data", data, "--arch", "resnet18", "--out", out, "--no-pretrained", *TINY
    )
    assert_one_line_error(p, 2, contains)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_corrupt_and_non_image_files_are_skipped_with_a_count(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=6, size=32)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (data / "blue" / "readme.txt").write_text("not an image")
    p = run_cli(
        "finetune",
        "--data",
        data,
        "--arch",
        "resnet18",
        "--out",
        tmp_path / "b",
        "--no-pretrained",
        "--size",
        "32",
        "--epochs",
        "1",
        "--freeze-epochs",
        "0",
        "--batch-size",
        "8",
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "skipped 2 unreadable or non-image files" in p.stdout
    assert (
        json.loads((tmp_path / "b" / "bundle.json").read_text())["training"]["data"]["skipped"] == 2
    )


@pytest.mark.parametrize(
    "args,contains",
    [
        (["--arch", "resnet1000"], "unknown arch 'resnet1000': choose one of"),
        (["--strategy", "freeze:9"], "K must be between 0 and 4"),
        (["--strategy", "sideways"], "unknown --strategy"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "fast"], "--lr must be a number or 'auto'"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--batch-size", "1"], "--batch-size must be at least 2"),
        (["--size", "huge"], "--size must be N or HxW"),
        (["--head", "mlp"], "unknown --head"),
        (["--aug", "colour"], "unknown --aug"),
        (["--balance", "maybe"], "unknown --balance"),
        (["--frozen-phase", "thaw"], "unknown --frozen-phase 'thaw': use one of fastai, probe"),
        (["--valid-pct", "1.5"], "--valid-pct must be between 0 and 1"),
        (["--weights", "/nonexistent/w.pth"], "does not exist"),
    ],
)
def test_bad_options(tmp_path, args, contains):
    data = make_color_dataset(tmp_path / "d")
    base = {"--arch": "resnet18"}
    argv = ["finetune", "--data", data, "--out", tmp_path / "o"]
    if "--arch" not in args:
        argv += ["--arch", base["--arch"]]
    if "--weights" not in args:
        argv.append("--no-pretrained")
    p = run_cli(*argv, *args, "--quiet")
    assert_one_line_error(p, 2, contains)
    assert not (tmp_path / "o").exists()


def test_existing_out_is_refused_unless_force(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=6, size=32)
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = [
        "finetune",
        "--data",
        data,
        "--arch",
        "resnet18",
        "--out",
        out,
        "--no-pretrained",
        *TINY,
    ]
    assert_one_line_error(run_cli(*args), 2, "already exists")
    assert (out / "keep.txt").read_text() == "mine"
    p = run_cli(*args, "--force")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "bundle.json").is_file() and not (out / "keep.txt").exists()


@needs_assets(MOBILENET_V2_WEIGHTS)
def test_weights_of_another_arch_are_refused(tmp_path):
    data = make_color_dataset(tmp_path / "d")
    p = run_cli(
        "finetune",
        "--data",
        data,
        "--arch",
        "resnet18",
        "--out",
        tmp_path / "o",
        "--weights",
        MOBILENET_V2_WEIGHTS,
        *TINY,
    )
    line = assert_one_line_error(p, 2, "does not fit resnet18")
    assert "missing keys" in line
    assert not (tmp_path / "o").exists()


def test_offline_without_weights_says_which_file_to_place_where(tmp_path, torch_home):
    data = make_color_dataset(tmp_path / "d")
    p = run_cli(
        "finetune",
        "--data",
        data,
        "--arch",
        "mobilenet_v2",
        "--out",
        tmp_path / "o",
        *TINY,
        env={"EDGEFT_OFFLINE": "1"},
    )
    line = assert_one_line_error(p, 2, "no pretrained weights for mobilenet_v2")
    assert "mobilenet_v2-7ebf99e0.pth" in line and str(torch_home / "hub" / "checkpoints") in line
    assert "--no-pretrained" in line


def _long_finetune(data, out) -> list[str]:
    """A finetune that runs for minutes, to be killed or interrupted mid-training."""
    return [
        sys.executable, "-m", "edgeft", "finetune", "--data", str(data),
        "--arch", "resnet18", "--out", str(out), "--no-pretrained",
        "--size", "64", "--epochs", "50", "--batch-size", "8",
    ]  # fmt: skip


def test_killed_during_training_leaves_no_bundle(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=60, size=64)
    out = tmp_path / "o"
    proc = subprocess.Popen(
        _long_finetune(data, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = ""
    deadline = time.time() + 240
    while time.time() < deadline and "train_loss" not in seen:  # fastai's epoch table header
        seen += proc.stdout.read(1) or ""
        if proc.poll() is not None:
            break
    assert "train_loss" in seen, seen[-2000:]
    time.sleep(2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    assert not [
        p
        for p in tmp_path.iterdir()
        if p.name.startswith("o") or "bundle.json" in os.listdir(p)
        if p.is_dir()
    ]


def test_interrupt_exits_130_with_one_line(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=60, size=64)
    out = tmp_path / "o"
    proc = subprocess.Popen(
        _long_finetune(data, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child of a background job inherits SIGINT ignored; give it the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    while "train_loss" not in seen and proc.poll() is None:
        seen += proc.stdout.read(1) or ""
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists()


def test_greyscale_rgba_and_palette_images_train_and_predict(tmp_path):
    from PIL import Image

    data = make_color_dataset(tmp_path / "d", n_per_class=6, size=32)
    for i, p in enumerate(sorted(data.rglob("*.png"))):
        img = Image.open(p)
        mode = ("L", "RGBA", "P", "RGB")[i % 4]
        img.convert(mode).save(p)
    assert {Image.open(p).mode for p in data.rglob("*.png")} == {"L", "RGBA", "P", "RGB"}
    out = tmp_path / "b"
    p = run_cli(
        "finetune", "--data", data, "--arch", "resnet18", "--out", out, "--no-pretrained", *TINY
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((out / "bundle.json").read_text())["training"]["data"]["skipped"] == 0
    p = run_cli("predict", out, data, "--json")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 18, p.stderr[-2000:]
