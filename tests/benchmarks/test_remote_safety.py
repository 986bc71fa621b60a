"""``bench --remote`` with a bundle or target from someone else: nothing is staged outside
its folder, and nothing in ``--remote`` reaches ssh as an option (issue 14.1, 14.6)."""

from __future__ import annotations

import json

import pytest

from benchmarks.remote import safe_child
from benchmarks.remote_ssh import Remote, parse_target
from edgeft.errors import UserError
from tests.bench_support import tiny_bench_bundle
from tests.conftest import assert_one_line_error, copy_bundle, run_cli


@pytest.mark.parametrize("label", ["ESCAPED_ABS", "../ESCAPED_UP", "a/../../ESCAPED_MID"])
def test_split_labels_that_are_paths_stage_nothing(tmp_path_factory, tmp_path, label):
    b = copy_bundle(tiny_bench_bundle(tmp_path_factory), tmp_path / "b")
    target = tmp_path / "elsewhere"
    target.mkdir()
    if label == "ESCAPED_ABS":
        label = str(target / "ESCAPED_ABS")
    split = json.loads((b / "split.json").read_text())
    split["valid"][0][1] = label
    (b / "split.json").write_text(json.dumps(split))
    # port 9 (discard) has nothing listening: a connection would fail, so a one-line refusal
    # about the label proves it came before any connection and any staging
    proc = run_cli("bench", b, "--remote", "nobody@127.0.0.1:9", "--out", tmp_path / "o")
    assert_one_line_error(proc, 2, "which is not one of the bundle's labels")
    assert list(target.iterdir()) == []
    assert not any(p.name.startswith("ESCAPED") for p in tmp_path.rglob("*"))


def test_staging_takes_plain_names_only(tmp_path):
    assert safe_child(tmp_path, "Forest") == tmp_path / "Forest"
    for name in ("/etc", "../up", "a/b", "..", "", "x\\y"):
        with pytest.raises(UserError, match="refusing to stage"):
            safe_child(tmp_path, name)


def test_the_destination_is_never_an_ssh_option():
    for target in ("-oProxyCommand=touch /tmp/pwned", "-p2222", "--help"):
        with pytest.raises(UserError, match="expected USER@HOST"):
            parse_target(target)
    argv = Remote("edgeft@jetson.local:2222").ssh_argv("true")
    assert argv[argv.index("--") + 1] == "edgeft@jetson.local"
    assert argv.index("--") > argv.index("-p")
