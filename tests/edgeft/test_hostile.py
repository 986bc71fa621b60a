"""Hostile and broken input to the core, each one line and exit 2 (or a counted skip),
never a traceback and nothing written where it should not be (issue 14)."""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeft.data import load_dataset
from edgeft.errors import UserError
from tests.conftest import (
    assert_one_line_error,
    copy_bundle,
    make_color_dataset,
    run_cli,
    tiny_bundle,
)


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A real decompression bomb: a valid greyscale PNG of side x side zeros, a few hundred KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    data = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    b = tiny_bundle(tmp_path_factory.mktemp("hostile"))
    assert run_cli("export", b, "--no-check", "--quiet").returncode == 0
    return b


def test_a_bomb_is_refused_by_predict_and_the_runtime(bomb, bundle, tmp_path):
    assert bomb.stat().st_size < 2_000_000
    assert_one_line_error(run_cli("predict", bundle, bomb), 2, "over the limit of 64")
    from edgeft.runtime import Classifier

    with Classifier.load(bundle) as clf, pytest.raises(UserError, match="400 megapixels"):
        clf.classify(str(bomb))
    # among good images: skipped and counted
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb.read_bytes())
    Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "red.png")
    proc = run_cli("predict", bundle, folder, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and "skipped 1 unreadable images" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the limit is the user's to raise, or lower
    small = tmp_path / "big.png"
    Image.new("RGB", (2000, 1000)).save(small)
    assert_one_line_error(
        run_cli("--max-pixels", "1000000", "predict", bundle, small), 2, "2 megapixels"
    )
    assert run_cli("--max-pixels", "3000000", "predict", bundle, small).returncode == 0


def test_a_bomb_in_a_dataset_is_skipped_with_a_count(bomb, tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=16)
    (data / "red" / "zz_bomb.png").write_bytes(bomb.read_bytes())
    ds = load_dataset(data)
    assert [Path(p).name for p, _ in ds.skipped] == ["zz_bomb.png"]
    assert "megapixels" in ds.skipped[0][1] and len(ds.train) + len(ds.valid) == 12


def test_a_link_to_the_data_root_is_not_a_class(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=16)
    os.symlink(".", data / "loop")
    with pytest.raises(UserError, match="class folder .*loop is a link to .*inside or above"):
        load_dataset(data)
    (data / "loop").unlink()
    os.symlink(data / "red", data / "again")  # the same images under a second label
    with pytest.raises(UserError, match="inside or above the data folder"):
        load_dataset(data)


def test_one_file_under_two_labels_is_an_error(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=4, size=16)
    first = next((data / "red").iterdir())
    os.symlink(first, data / "blue" / "sneaky.png")
    with pytest.raises(UserError, match="is the same file as one in class"):
        load_dataset(data)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("", "an empty label"),
        ("../x", "not a plain folder name"),
        ("a\\b", "not a plain folder name"),
    ],
)
def test_csv_labels_must_be_plain_names(tmp_path, label, message):
    data = make_color_dataset(tmp_path / "d", n_per_class=3, size=16)
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    rows[0] = rows[0].rsplit(",", 1)[0] + f",{label}"
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match=message):
        load_dataset(tmp_path / "labels.csv")


def test_a_class_with_one_image_is_named(tmp_path):
    data = make_color_dataset(tmp_path / "d", n_per_class=5, size=16)
    for p in sorted((data / "blue").iterdir())[1:]:
        p.unlink()
    ds = load_dataset(data)
    assert any("'blue' has no validation image" in note for note in ds.notes)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"schema_version": "1"}, "schema_version must be an integer, not '1'"),
        ({"schema_version": 99}, "newer than this edgeft reads"),
        ({"labels": ["a", "a", "b"]}, "appears twice"),
        ({"labels": ["a", "b/../c", "d"]}, "not a plain folder name"),
        (
            {"preprocessing": {"size": [32, 32], "mean": [0, 0, float("nan")], "std": [1, 1, 1]}},
            "finite",
        ),
    ],
)
def test_a_tampered_manifest_is_one_line(bundle, tmp_path, edit, message):
    b = copy_bundle(bundle, tmp_path / "b")
    mf = json.loads((b / "bundle.json").read_text())
    mf.update(edit)
    (b / "bundle.json").write_text(json.dumps(mf))
    assert_one_line_error(run_cli("predict", b, b), 2, message)


def test_artifact_paths_cannot_leave_the_bundle(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    mf = json.loads((b / "bundle.json").read_text())
    mf["artifacts"]["onnx"]["path"] = "../../etc/passwd"
    (b / "bundle.json").write_text(json.dumps(mf))
    assert_one_line_error(
        run_cli("predict", b, b, "--backend", "onnx"), 2, "plain file name inside the bundle"
    )


def test_files_keep_readable_modes_after_export(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    proc = run_cli("export", b, "--int8", "--no-check", "--quiet")
    assert proc.returncode == 0, proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    for path in (b / "bundle.json", b / "model-int8.onnx"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert stat.S_IMODE(b.stat().st_mode) == 0o777 & ~umask


def test_bad_calibration_data_records_nothing(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    mf = json.loads((b / "bundle.json").read_text())
    mf["artifacts"] = {}
    (b / "bundle.json").write_text(json.dumps(mf))
    (b / "model.onnx").unlink()
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    proc = run_cli("export", b, "--int8", "--calib-data", empty)
    assert_one_line_error(proc, 2, "no readable calibration image")
    assert json.loads((b / "bundle.json").read_text())["artifacts"] == {}
    assert not (b / "model.onnx").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_non_finite_and_non_positive_learning_rates_are_refused(tmp_path, value):
    data = make_color_dataset(tmp_path / "d", n_per_class=3, size=16)
    proc = run_cli(
        "finetune", "--data", data, "--arch", "mobilenet_v2", "--out", tmp_path / "b", "--lr", value
    )
    assert_one_line_error(proc, 2, "--lr must be positive and finite")
    assert not (tmp_path / "b").exists()


def test_frames_the_runtime_cannot_classify(bundle):
    from edgeft.runtime import Classifier

    with Classifier.load(bundle) as clf:
        with pytest.raises(UserError):
            clf.classify(np.zeros((0, 0, 3), np.uint8))
        with pytest.raises(UserError):
            clf.classify(np.zeros((8, 8, 3), np.uint8), channel_order="XYZ")
