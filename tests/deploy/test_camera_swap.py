"""Model updates without downtime: `edgeft camera --bundle-dir DIR` while it classifies a
looping video (every frame, in order), with DIR/current pointed at a retrained bundle, a
corrupted one, a consistent but wrong one, one that collapses, and back (by SIGHUP)."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgeft.bundle import Bundle
from edgeft.preprocess import load_rgb
from tests.camera_support import Lines, camera_proc, free_port, wait_for, write_lossless_video
from tests.conftest import copy_bundle

PROBATION = 10


def _point(bundle_dir, target) -> None:
    """Repoint DIR/current atomically (a new link renamed over the old one)."""
    tmp = bundle_dir / ".current.new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, bundle_dir / "current")


def _edit_head(bundle_path, fn, drop_golden: bool = False) -> None:
    """Change the FP32 ONNX model's last weight matrix with ``fn`` and record the new file's
    sha256 as export would: a bundle that is consistent, but not the model it claims."""
    import onnx
    from onnx import numpy_helper

    path = bundle_path / "model.onnx"
    model = onnx.load(path)
    inits = {i.name: i for i in model.graph.initializer}
    last = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")][-1]
    w = next(inits[i] for i in last.input if i in inits)
    w.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(w)), w.name))
    onnx.save(model, path)
    from edgeft.atomic import sha256_file

    b = Bundle.load(bundle_path, trust_modified=True)
    rec = b.artifact("onnx").model_copy(update={"sha256": sha256_file(path)})
    with b.lock():
        b.record_artifacts({"onnx": rec})
        if drop_golden:
            b.manifest.golden = None
            b.write_manifest()


@pytest.fixture(scope="module")
def setup(cam_bundle, cam_bundle_retrained, tmp_path_factory):
    root = tmp_path_factory.mktemp("swap")
    corrupted = copy_bundle(cam_bundle_retrained, root / "corrupted")
    data = bytearray((corrupted / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    (corrupted / "model.onnx").write_bytes(bytes(data))
    wrong = copy_bundle(cam_bundle_retrained, root / "wrong")
    _edit_head(wrong, lambda w: np.roll(w, 1, axis=1))  # classes shifted: golden images fail
    collapse = copy_bundle(cam_bundle_retrained, root / "collapse")
    _edit_head(collapse, np.zeros_like, drop_golden=True)  # uniform outputs, no self-test
    assert Bundle.load(wrong).manifest.golden is not None
    paths = [p for p, _ in Bundle.load(cam_bundle).split()["valid"]]
    frames = [np.asarray(load_rgb(p)) for p in paths]
    video = write_lossless_video(root / "loop.avi", frames)
    return {
        "a": cam_bundle,
        "b": cam_bundle_retrained,
        "corrupted": corrupted,
        "wrong": wrong,
        "collapse": collapse,
        "video": video,
        "frames": frames,
        "dir": root / "models",
    }


def _sha(bundle) -> str:
    return Bundle.load(bundle).artifact("onnx").sha256


def _events(lines) -> list[dict]:
    return [r["swap"] for r in lines.records() if "swap" in r]


def _health(port) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def test_hot_swap_under_a_running_stream(setup, tmp_path):
    s, port = setup, free_port()
    s["dir"].mkdir(exist_ok=True)
    _point(s["dir"], s["a"])
    lines = Lines(
        camera_proc(
            "--bundle-dir",
            s["dir"],
            "--source",
            s["video"],
            "--loop",
            "--backend",
            "onnx",
            "--watch-interval",
            "0.2",
            "--probation",
            PROBATION,
            "--serve",
            f"127.0.0.1:{port}",
            "--summary",
            tmp_path / "s.json",
        )
    )
    steps = [
        ("b", ["swapped", "confirmed"]),
        ("corrupted", ["refused"]),
        ("wrong", ["refused"]),
        ("collapse", ["swapped", "rolled_back"]),
    ]
    try:
        assert wait_for(lambda: len(lines.out) >= 50, timeout=60), lines.err
        seen = 0
        for name, results in steps:
            _point(s["dir"], s[name])
            want = seen + len(results)
            assert wait_for(lambda w=want: len(_events(lines)) >= w, timeout=60), lines.err
            assert [e["result"] for e in _events(lines)[seen:want]] == results, _events(lines)
            seen = want
            health = _health(port)
            assert health["sha256"] == _sha(s["b"]) and health["swap"]["result"] == results[-1]
        _point(s["dir"], s["a"])  # and back
        assert wait_for(lambda: len(_events(lines)) >= seen + 2, timeout=60), lines.err
        n = len(lines.out)
        assert wait_for(lambda: len(lines.out) >= n + 20, timeout=30)
        assert _health(port)["sha256"] == _sha(s["a"])
        assert lines.finish() == 0, lines.err
    finally:
        if lines.proc.poll() is None:
            lines.proc.kill()
    assert not lines.has_err("Traceback"), lines.err
    _check(s, lines, json.loads((tmp_path / "s.json").read_text()))


def _check(s, lines, summary) -> None:
    from edgeft.runtime import Classifier

    records = lines.records()
    # every frame, in order: none lost across five swaps
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert summary["frames"] == len(records) and summary["dropped"] == 0
    ev = _events(lines)
    reasons = {e["result"]: e["reason"] for e in ev}
    assert "sha256" in [e for e in ev if e["result"] == "refused"][0]["reason"]
    assert "self-test" in [e for e in ev if e["result"] == "refused"][1]["reason"]
    assert "confidence collapse" in reasons["rolled_back"]
    sw = summary["swaps"]
    assert (sw["swapped"], sw["confirmed"], sw["rolled_back"], sw["refused"]) == (3, 2, 1, 2)
    # each frame classified wholly by the model its line names, as that model answers alone
    models = {_sha(s[k])[:12]: s[k] for k in ("a", "b", "collapse")}
    by_model = [r["model"] for r in records]
    assert by_model.count(_sha(s["collapse"])[:12]) == PROBATION - 1  # its 10th frame: redone
    segments = [m for i, m in enumerate(by_model) if i == 0 or by_model[i - 1] != m]
    a, b, u = (_sha(s[k])[:12] for k in ("a", "b", "collapse"))
    assert segments == [a, b, u, b, a]
    n = len(s["frames"])
    for sha, bundle in models.items():
        with Classifier.load(bundle, backend="onnx") as clf:
            expect = [clf.classify(f, top_k=3) for f in s["frames"]]
        for r in (r for r in records if r["model"] == sha):
            e = expect[r["frame"] % n]
            assert [t["label"] for t in r["top"]] == e.labels or np.ptp(e.probs) < 1e-6
            assert np.allclose([t["prob"] for t in r["top"]], e.probs, atol=2e-6)


def test_sighup_reloads_the_bundle_path(setup, tmp_path):
    """Without --bundle-dir nothing is watched: SIGHUP reloads the bundle path (here a link
    repointed to the retrained bundle) and swaps it in."""
    link = tmp_path / "bundle"
    link.symlink_to(setup["a"])
    lines = Lines(
        camera_proc(
            link, "--source", setup["video"], "--loop", "--backend", "onnx", "--probation", "5"
        )
    )
    try:
        assert wait_for(lambda: len(lines.out) >= 30, timeout=60), lines.err
        _point_link(link, setup["b"])
        n = len(lines.out)
        assert wait_for(lambda: len(lines.out) >= n + 200, timeout=30)
        assert not _events(lines)  # not watched: nothing happens by itself
        lines.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(_events(lines)) >= 2, timeout=60), lines.err
        assert lines.finish() == 0, lines.err
    finally:
        if lines.proc.poll() is None:
            lines.proc.kill()
    assert [e["result"] for e in _events(lines)] == ["swapped", "confirmed"]
    records = lines.records()
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert (
        records[-1]["model"] == _sha(setup["b"])[:12]
        and records[0]["model"] == _sha(setup["a"])[:12]
    )


def _point_link(link, target) -> None:
    tmp = link.with_name(".link.new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.mark.parametrize(
    "args,needle",
    [
        ([], "give a bundle folder, or --bundle-dir DIR"),
        (["BUNDLE", "--bundle-dir", "DIR"], "either a bundle folder or --bundle-dir, not both"),
        (["--bundle-dir", "EMPTY"], "has no `current` link to a bundle"),
        (["--bundle-dir", "DIR", "--watch-interval", "0"], "--watch-interval must be positive"),
    ],
)
def test_bundle_choice_errors_are_one_line(setup, tmp_path, args, needle):
    from tests.conftest import assert_one_line_error, run_cli

    (tmp_path / "empty").mkdir()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "current").symlink_to(setup["a"])
    names = {"BUNDLE": setup["a"], "DIR": tmp_path / "dir", "EMPTY": tmp_path / "empty"}
    proc = run_cli("camera", *[names.get(a, a) for a in args], "--source", setup["video"])
    assert_one_line_error(proc, 2, needle)
