"""`edgeft bench --remote` against a real OpenSSH server that the tests start on 127.0.0.1.

The server runs as this user on a free port with a generated host key, key
authentication only (no passwords, no keyboard-interactive), and a temporary
authorized_keys. Install the server with `.ci/sshd-test-setup` (Debian's openssh-server).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.bench import BenchOptions
from benchmarks.remote import run_remote
from benchmarks.remote_ssh import parse_target
from edgeft.errors import UserError
from tests.bench_support import (
    copy_bundle,
    set_onnx_preprocessing_metadata,
    swapped_pp,
    tiny_bench_bundle,
)
from tests.conftest import MOBILENET_V2_WEIGHTS, assert_one_line_error, needs_assets, run_cli

pytestmark = [pytest.mark.ssh, needs_assets(MOBILENET_V2_WEIGHTS)]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
EDGEFT = str(Path(sys.executable).parent / "edgeft")  # the remote is this machine: the same install
FAST = ["--runs", "2", "--warmup", "1", "--threads", "1", "--batch-sizes", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeft-test", "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1:<free port>; yields what a client needs to reach it."""
    d = tmp_path_factory.mktemp("sshd")
    host_key, client_key, other_key = (
        _keygen(d / "host_key"),
        _keygen(d / "client_key"),
        _keygen(d / "other_key"),
    )
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {d / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile {d / "sshd.pid"}
""")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # the privilege-separation folder sshd insists on
    with open(d / "sshd.log", "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL, stderr=log
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip("sshd did not listen within 15 s")
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    env = {"EDGEFT_SSH_OPTIONS": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"}
    yield {
        "target": f"{getpass.getuser()}@127.0.0.1:{port}",
        "key": client_key,
        "other_key": other_key,
        "env": env,
        "port": port,
        "dir": d,
    }
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_bench_bundle(tmp_path_factory)


def _ladder(report: dict) -> dict:
    """Ladder figures with flipped images as a set of file paths (order depends on staging)."""
    out = {}
    for r in report["ladder"]["rows"]:
        f = dict(r["figures"])
        f["flipped"] = sorted((x["path"], x["prediction"]) for x in f["flipped"])
        out[r["backend"]] = (f, r["passed"], r["tolerance"])
    return out


def test_remote_bench_gives_the_local_report(sshd, tiny, tmp_path):
    lenient = ["--tolerance", "int8.max_accuracy_drop=100", "--tolerance", "int8.min_agreement=0"]
    local = run_cli("bench", tiny, "--out", tmp_path / "local", *FAST, *lenient)
    assert local.returncode == 0, local.stderr
    remote = run_cli(
        "bench",
        tiny,
        "--out",
        tmp_path / "remote",
        "--remote",
        sshd["target"],
        "--ssh-key",
        sshd["key"],
        "--remote-edgeft",
        EDGEFT,
        *FAST,
        *lenient,
        env=sshd["env"],
    )
    assert remote.returncode == 0, remote.stderr
    a = json.loads((tmp_path / "local" / "report.json").read_text())
    b = json.loads((tmp_path / "remote" / "report.json").read_text())
    assert b["remote"]["host"] == "127.0.0.1" and b["remote"]["copy"] == "rsync"
    assert not Path(b["remote"]["remote_folder"]).exists()  # the remote copy was cleaned up
    # Same report modulo timings: backends, ladder figures, data, paths mapped back here.
    assert [(x["name"], x["status"]) for x in a["backends"]] == [
        (x["name"], x["status"]) for x in b["backends"]
    ]
    assert _ladder(a) == _ladder(b)
    assert a["ladder"]["reference"] == b["ladder"]["reference"]
    for k in ("n_images", "per_class", "skipped_unreadable", "unknown_labels"):
        assert a["data"][k] == b["data"][k]
    assert b["bundle"]["path"] == a["bundle"]["path"]
    assert [(e["backend"], e["batch_size"], e["model"]["runs"]) for e in a["latency"]] == [
        (e["backend"], e["batch_size"], e["model"]["runs"]) for e in b["latency"]
    ]
    assert (tmp_path / "remote" / "report.md").is_file()
    assert set(b["files"]["plots"]) == set(a["files"]["plots"])


def test_remote_with_tar_copy_and_a_data_folder(sshd, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFT_SSH_OPTIONS", sshd["env"]["EDGEFT_SSH_OPTIONS"])
    data = Path(json.loads((tiny / "split.json").read_text())["root"])
    opts = BenchOptions(
        bundle=tiny,
        data=data,
        backends=["torch", "onnx"],
        batch_sizes=(1,),
        runs=2,
        warmup=0,
        threads=1,
        out=tmp_path / "r",
        remote=sshd["target"],
        ssh_key=sshd["key"],
        remote_edgeft=EDGEFT,
        quiet=True,
    )
    opts.validate()
    report = run_remote(opts, method="tar")
    assert report["remote"]["copy"] == "tar"
    assert report["data"]["n_images"] == 60 and report["data"]["source"] == str(data.resolve())
    assert {r["backend"]: r["figures"]["agreement"] for r in report["ladder"]["rows"]} == {
        "torch": 1.0,
        "onnx": 1.0,
    }
    assert json.loads((tmp_path / "r" / "report.json").read_text())["remote"]["copy"] == "tar"


def test_remote_parity_breach_exits_3_with_the_remote_figures(sshd, tiny, tmp_path):
    b = copy_bundle(tiny, tmp_path / "b")
    set_onnx_preprocessing_metadata(b, "onnx", swapped_pp(b))  # the planted fault
    proc = run_cli(
        "bench",
        b,
        "--backends",
        "onnx",
        "--out",
        tmp_path / "r",
        "--remote",
        sshd["target"],
        "--ssh-key",
        sshd["key"],
        "--remote-edgeft",
        EDGEFT,
        *FAST,
        env=sshd["env"],
    )
    line = assert_one_line_error(proc, 3, "parity ladder failed: onnx: accuracy")
    assert "differs from the bundle's in mean, std" in line
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["remote"]["host"] == "127.0.0.1" and not report["verdict"]["passed"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong_host", "cannot resolve host 'no-such-host.invalid'"),
        ("closed_port", "refused the connection on port"),
        ("refused_key", "refused the SSH key for"),
        ("unknown_host_key", "SSH host key of 127.0.0.1 is unknown or has changed"),
        ("missing_edgeft", "edgeft is not installed on 127.0.0.1"),
        ("missing_key_file", "--ssh-key"),
    ],
)
def test_remote_errors_are_one_line(sshd, tiny, tmp_path, case, message):
    target, key, env, edgeft = sshd["target"], sshd["key"], dict(sshd["env"]), EDGEFT
    if case == "wrong_host":
        target = "someone@no-such-host.invalid"
    elif case == "closed_port":
        target = f"{getpass.getuser()}@127.0.0.1:{_free_port()}"
    elif case == "refused_key":
        key = sshd["other_key"]
    elif case == "unknown_host_key":
        (tmp_path / "empty_known_hosts").write_text("")
        env["EDGEFT_SSH_OPTIONS"] = (
            f"-o UserKnownHostsFile={tmp_path / 'empty_known_hosts'} -o StrictHostKeyChecking=yes"
        )
    elif case == "missing_edgeft":
        edgeft = "edgeft"  # not on the PATH of a non-interactive ssh shell here
    elif case == "missing_key_file":
        key = tmp_path / "nope"
    proc = run_cli(
        "bench",
        tiny,
        "--out",
        tmp_path / "r",
        "--remote",
        target,
        "--ssh-key",
        key,
        "--remote-edgeft",
        edgeft,
        *FAST,
        env=env,
        timeout=120,
    )
    assert_one_line_error(proc, 2, message)
    assert not (tmp_path / "r").exists()


def test_parse_target():
    assert parse_target("nvidia@jetson.local") == ("nvidia@jetson.local", "jetson.local", None)
    assert parse_target("me@10.0.0.7:2222") == ("me@10.0.0.7", "10.0.0.7", 2222)
    assert parse_target("orin") == ("orin", "orin", None)
    assert parse_target("me@[::1]:22") == ("me@::1", "::1", 22)
    with pytest.raises(UserError, match="expected USER@HOST"):
        parse_target("a@b@c")
