"""edgeft.runtime: backend choice, preprocessing parity, input forms, threads, no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from edgeft.errors import UserError
from edgeft.preprocess import (
    Preprocessing,
    frame_to_image,
    image_to_input,
    load_rgb,
    preprocess_batch,
)
from tests.camera_support import BLOCK_HEAVY, export_onnx, tiny_bundle
from tests.conftest import assert_one_line_error


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """One tiny bundle, copied with different artifact sets: none, onnx, onnx + int8 + folded."""
    root = tmp_path_factory.mktemp("rt")
    bare = tiny_bundle(root)
    fp32 = root / "fp32"
    shutil.copytree(bare, fp32)
    export_onnx(fp32)
    full = root / "full"
    shutil.copytree(fp32, full)
    export_onnx(full, onnx=False, int8=True, folded=True)
    return {"bare": bare, "fp32": fp32, "full": full}


def _valid_paths(bundle_path, n=12):
    from edgeft.bundle import Bundle

    return [p for p, _ in Bundle.load(bundle_path).split()["valid"]][:n]


def _torch_probs(bundle_path, paths):
    from edgeft import formats
    from edgeft.bundle import Bundle
    from edgeft.metrics import softmax

    b = Bundle.load(bundle_path)
    with formats.make_runner("torch", b) as r:
        return softmax(r.infer(preprocess_batch(paths, b.preprocessing)))


def test_auto_picks_int8_on_cpu_then_fp32(bundles):
    from edgeft.runtime import Classifier, candidates

    assert [c[0] for c in candidates("cpu")][:4] == [
        "onnx-int8",
        "openvino-int8",
        "onnx",
        "openvino",
    ]
    with Classifier.load(bundles["full"]) as clf:
        assert (clf.backend, clf.device) == ("onnx-int8", "cpu")
        assert clf.describe()["providers"] == ["CPUExecutionProvider"]
    with Classifier.load(bundles["fp32"]) as clf:
        assert clf.backend == "onnx"


@pytest.mark.parametrize("backend", ["onnx", "onnx-folded", "torch"])
def test_probabilities_match_torch_reference(bundles, backend):
    from edgeft.runtime import Classifier

    paths = _valid_paths(bundles["full"])
    ref = _torch_probs(bundles["full"], paths)
    with Classifier.load(bundles["full"], backend=backend) as clf:
        res = clf.classify(paths, top_k=3)
    got = np.stack([r.scores for r in res])
    assert np.abs(got - ref).max() < 1e-4
    assert [r.label for r in res] == [clf.labels[i] for i in ref.argmax(1)]
    assert all(len(r.labels) == 3 and r.probs == sorted(r.probs, reverse=True) for r in res)


def test_int8_agrees_with_fp32(bundles):
    from edgeft.runtime import Classifier

    paths = _valid_paths(bundles["full"], 30)
    ref = _torch_probs(bundles["full"], paths)
    with Classifier.load(bundles["full"], backend="onnx-int8") as clf:
        got = np.stack([r.scores for r in clf.classify(paths)])
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9
    assert np.abs(got - ref).max() < 0.2


def test_every_input_form_gives_the_same_answer(bundles):
    from edgeft.runtime import Classifier

    path = _valid_paths(bundles["fp32"], 1)[0]
    rgb = np.asarray(load_rgb(path))
    forms = {
        "path": (str(path), "RGB"),
        "pathlib": (path, "RGB"),
        "pil": (Image.open(path), "RGB"),
        "rgb": (rgb, "RGB"),
        "bgr": (np.ascontiguousarray(rgb[..., ::-1]), "BGR"),
        "rgba": (np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGB"),
    }
    with Classifier.load(bundles["fp32"]) as clf:
        ref = clf.classify(path).scores
        for name, (x, order) in forms.items():
            assert np.array_equal(clf.classify(x, channel_order=order).scores, ref), name
        batch = clf.classify(np.stack([rgb, rgb]), top_k=1)
        assert len(batch) == 2 and all(np.array_equal(r.scores, ref) for r in batch)
        assert [r.label for r in clf.classify([path, rgb])] == [clf.classify(path).label] * 2
        assert clf.classify([]) == []
        with pytest.raises(UserError, match="uint8"):
            clf.classify(rgb.astype(np.float32))
        with pytest.raises(UserError, match="top_k"):
            clf.classify(rgb, top_k=0)


@pytest.mark.parametrize("resize", ["crop", "squish"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(480, 640, 3), (64, 64, 3), (33, 77, 4), (100, 60, 3), (50, 70)])
def test_frame_prep_is_bit_exact(resize, normalize, shape):
    """The fast frame path computes exactly what edgeft.preprocess computes."""
    from edgeft.runtime import FramePrep

    rng = np.random.default_rng(sum(shape))
    frame = rng.integers(0, 256, size=shape, dtype=np.uint8)
    for pp in (
        Preprocessing(
            size=(48, 48), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=resize
        ),
        Preprocessing(
            size=(96, 160),
            mean=(0.5, 0.4, 0.3),
            std=(0.2, 0.3, 0.25),
            resize=resize,
            interpolation="bicubic",
        ),
    ):
        prep = FramePrep(pp, normalize=normalize)
        for order in ("RGB", "BGR"):
            ref = image_to_input(
                frame_to_image(frame, order if frame.ndim == 3 else "RGB"), pp, normalize
            )
            assert np.array_equal(prep(frame, order), ref), (order, pp.size)


def test_threads_get_the_same_answers_as_serial(bundles):
    from edgeft.runtime import Classifier

    paths = _valid_paths(bundles["full"], 12)
    frames = [np.asarray(load_rgb(p)) for p in paths]
    for backend in ("onnx-int8", "torch"):  # ORT runs concurrently; torch goes through the lock
        with Classifier.load(bundles["full"], backend=backend) as clf:
            serial = [clf.classify(f).scores for f in frames]
            results, errors = {}, []

            def work(tid, clf=clf, results=results, errors=errors):
                try:
                    for rep in range(10):
                        for i in range(tid % 3, len(frames), 2):
                            results[(tid, rep, i)] = clf.classify(frames[i]).scores
                except Exception as exc:  # surfaced below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            assert len(results) > 100
            for (_, _, i), scores in results.items():
                np.testing.assert_allclose(scores, serial[i], rtol=0, atol=1e-6)


def test_explicit_backend_without_its_artifact(bundles):
    from edgeft.runtime import Classifier

    with pytest.raises(UserError, match="--int8"):
        Classifier.load(bundles["fp32"], backend="onnx-int8")
    with pytest.raises(UserError, match="unknown backend"):
        Classifier.load(bundles["fp32"], backend="tflite")


def _run_blocked(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY + code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_runtime_and_camera_run_without_torch_or_fastai(bundles, tmp_path):
    """The device path (Classifier and the whole camera loop) with torch, torchvision,
    fastai and timm made unimportable."""
    from tests.camera_support import write_lossless_video

    video = write_lossless_video(
        tmp_path / "v.avi", [np.full((40, 40, 3), (200, 30, 30), np.uint8)] * 5
    )
    code = (
        "import numpy as np\n"
        "from edgeft.runtime import Classifier\n"
        "from deploy.camera import CameraOptions, run_camera\n"
        "clf = Classifier.load(sys.argv[1])\n"
        "r = clf.classify(np.full((40, 40, 3), (200, 30, 30), np.uint8))\n"
        "s = run_camera(CameraOptions(bundle=sys.argv[1], source=sys.argv[2], out=sys.argv[3]))\n"
        "heavy = [m for m in ('torch', 'torchvision', 'fastai', 'timm') if sys.modules.get(m) is not None]\n"
        "print(clf.backend, s['frames'], heavy)\n"
    )
    proc = _run_blocked(code, bundles["full"], video, tmp_path / "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    backend, frames, heavy = proc.stdout.split(maxsplit=2)
    assert (backend, frames, heavy.strip()) == ("onnx-int8", "5", "[]")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5


def test_classifier_needs_no_opencv(bundles):
    """Embedding with Pillow images or arrays works where OpenCV is absent too."""
    code = (
        "sys.modules['cv2'] = None\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from edgeft.runtime import Classifier\n"
        "clf = Classifier.load(sys.argv[1])\n"
        "a = np.full((40, 40, 3), (30, 30, 200), np.uint8)\n"
        "r1, r2 = clf.classify(Image.fromarray(a)), clf.classify(a)\n"
        "print(r1.label == r2.label, bool((r1.scores == r2.scores).all()))\n"
    )
    proc = _run_blocked(code, bundles["full"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]


def test_no_runnable_artifact_names_what_to_export(bundles):
    proc = _run_blocked(
        "from edgeft.runtime import Classifier\nClassifier.load(sys.argv[1])\n", bundles["bare"]
    )
    assert proc.returncode != 0 and "UserError" in proc.stderr
    msg = proc.stderr.strip().splitlines()[-1]
    assert "no artifact this machine can run" in msg and "edgeft export" in msg and "--int8" in msg
    assert "torch is not installed" in msg
    # the same through the CLI: one line, exit 2
    cli = (
        "from edgeft.cli import main\nsys.argv = ['edgeft', 'camera', sys.argv[1], '--source', sys.argv[2]]\n"
        "main()\n"
    )
    video = bundles["bare"] / "split.json"  # any existing file: the bundle check comes first
    assert_one_line_error(
        _run_blocked(cli, bundles["bare"], video), 2, "no artifact this machine can run"
    )
