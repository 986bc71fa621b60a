"""Dataset layouts, the seeded stratified split, and bad data."""

from __future__ import annotations

import pytest

from edgeft.data import load_dataset
from edgeft.errors import UserError
from tests.conftest import make_color_dataset


def test_folder_per_class_split_is_stratified_and_seeded(tmp_path):
    root = make_color_dataset(tmp_path / "d", n_per_class=10)
    a = load_dataset(root, valid_pct=0.2, seed=0)
    b = load_dataset(root, valid_pct=0.2, seed=0)
    c = load_dataset(root, valid_pct=0.2, seed=1)
    assert a.layout == "folder-per-class" and a.labels == ["blue", "green", "red"]
    assert a.counts("valid") == {"blue": 2, "green": 2, "red": 2}
    assert a.counts("train") == {"blue": 8, "green": 8, "red": 8}
    assert [s.path for s in a.valid] == [s.path for s in b.valid]
    assert [s.path for s in a.valid] != [s.path for s in c.valid]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert not ({s.path for s in a.train} & {s.path for s in a.valid})


def test_train_valid_folders_and_valid_dir(tmp_path):
    make_color_dataset(tmp_path / "tv" / "train", n_per_class=4)
    make_color_dataset(tmp_path / "tv" / "valid", n_per_class=2, seed=1)
    ds = load_dataset(tmp_path / "tv")
    assert ds.layout == "train/valid" and len(ds.train) == 12 and len(ds.valid) == 6
    make_color_dataset(tmp_path / "a", n_per_class=4)
    make_color_dataset(tmp_path / "b", n_per_class=3, seed=2)
    ds = load_dataset(tmp_path / "a", valid_dir=tmp_path / "b")
    assert ds.layout == "train+valid-dir" and len(ds.train) == 12 and len(ds.valid) == 9


def test_csv_with_header_and_split(tmp_path):
    root = make_color_dataset(tmp_path / "d", n_per_class=5)
    rows = ["path,label,split"]
    for i, p in enumerate(sorted(root.rglob("*.png"))):
        rows.append(f"{p.relative_to(root)},{p.parent.name},{'valid' if i % 5 == 0 else 'train'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(root / "labels.csv")
    assert ds.layout == "csv" and len(ds.valid) == 3 and len(ds.train) == 12
    (root / "nosplit.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows[1:]) + "\n")
    ds = load_dataset(root / "nosplit.csv", valid_pct=0.4)
    assert len(ds.valid) == 6


def test_corrupt_and_non_image_files_are_skipped_with_a_count(tmp_path):
    root = make_color_dataset(tmp_path / "d", n_per_class=4)
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "green" / "notes.txt").write_text("hello")
    ds = load_dataset(root)
    assert len(ds.skipped) == 2
    assert len(ds.train) + len(ds.valid) == 12


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "does not exist"),
        ("empty", "holds no class folders"),
        ("one_class", "only one class"),
        ("empty_class", "holds no files"),
        ("all_corrupt", "no readable images"),
        ("class_all_corrupt", "has no readable images"),
    ],
)
def test_bad_data_gives_one_clear_error(tmp_path, case, message):
    root = tmp_path / "d"
    if case == "empty":
        root.mkdir()
    elif case == "one_class":
        make_color_dataset(root, classes=("red",))
    elif case == "empty_class":
        make_color_dataset(root)
        (root / "zebra").mkdir()
    elif case == "all_corrupt":
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            (root / c / "x.png").write_bytes(b"garbage")
    elif case == "class_all_corrupt":
        make_color_dataset(root)
        (root / "zebra").mkdir()
        (root / "zebra" / "x.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match=message):
        load_dataset(root)


def test_valid_pct_must_be_a_fraction(tmp_path):
    root = make_color_dataset(tmp_path / "d")
    with pytest.raises(UserError, match="valid-pct"):
        load_dataset(root, valid_pct=1.5)
