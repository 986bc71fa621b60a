"""TensorRT engine building: the explicit (strongly typed) path runs for real on TensorRT-RTX,
which builds on a CPU-only machine; the builder-flag/calibrator path of TensorRT 8.5-10.x
needs ``tensorrt`` and a GPU and skips with the reason elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgeft.errors import EXIT_USER
from edgeft.platform import gpu as device
from exporters import tensorrt_calib as calib
from exporters.onnx_fp16 import to_fp16, topological_sort
from exporters.tensorrt_build import (
    EngineMismatch,
    TensorRTBuildError,
    TensorRTUnavailable,
    TRTInfo,
    build_engine,
    check_engine_compatible,
    load_trt,
)

HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
CHW = (3, 32, 32)

needs_rtx = pytest.mark.skipif(
    not HAS_RTX, reason="tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13)"
)


def _gpu_or_skip():
    gpu, reason = device.probe_gpu()
    if gpu is None:
        pytest.skip(f"needs a CUDA GPU: {reason}")
    return gpu


def _calib_inputs(n_batches=3, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *CHW)).astype(np.float32) for _ in range(n_batches)]


# ---------------------------------------------------------------- fixtures: tiny ONNX CNNs


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("trt_onnx")


@pytest.fixture(scope="module")
def fp32_onnx(onnx_dir):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()
    path = onnx_dir / "tiny.onnx"
    torch.onnx.export(
        model,
        torch.randn(1, *CHW),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


@pytest.fixture(scope="module")
def fp16_onnx(fp32_onnx, onnx_dir):
    return to_fp16(fp32_onnx, onnx_dir / "tiny.fp16.onnx")


def _quantize(src, dst, quantize_bias: bool):
    q = pytest.importorskip("onnxruntime.quantization")

    class Reader(q.CalibrationDataReader):
        # Random-but-fixed inputs: enough for a builder test, not for accuracy.
        def __init__(self):
            self._it = iter([{"input": x[:1]} for x in _calib_inputs(4, 1, seed=1)])

        def get_next(self):
            return next(self._it, None)

    q.quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        per_channel=True,
        # TensorRT's explicit quantization: symmetric signed INT8, zero point 0, and float
        # biases (TensorRT rejects ORT's default int32 bias DequantizeLinear).
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": quantize_bias,
        },
    )
    return dst


@pytest.fixture(scope="module")
def qdq_onnx(fp32_onnx, onnx_dir):
    return _quantize(fp32_onnx, onnx_dir / "tiny.qdq.onnx", quantize_bias=False)


# ---------------------------------------------------------------- FP16 ONNX helper


def test_to_fp16_keeps_float32_io_and_matches_fp32(fp32_onnx, fp16_onnx):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(fp16_onnx))
    onnx.checker.check_model(model)  # topologically sorted again
    f16 = onnx.TensorProto.FLOAT16
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    weights = [t for t in model.graph.initializer if t.data_type in (f16, onnx.TensorProto.FLOAT)]
    assert weights and all(t.data_type == f16 for t in weights)
    assert sum(n.op_type == "Cast" for n in model.graph.node) >= 2
    x = np.concatenate(_calib_inputs(2, 4, seed=3))
    ref = ort.InferenceSession(str(fp32_onnx)).run(None, {"input": x})[0]
    out = ort.InferenceSession(str(fp16_onnx)).run(None, {"input": x})[0]
    assert out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-2 * max(1.0, np.abs(ref).max())
    assert (out.argmax(1) == ref.argmax(1)).mean() == 1.0


def test_topological_sort_repairs_reversed_graph():
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    nodes = [h.make_node("Relu", ["x"], ["a"]), h.make_node("Neg", ["a"], ["y"])]
    vi = [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = h.make_graph(list(reversed(nodes)), "g", [vi[0]], [vi[1]])
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(h.make_model(graph))
    topological_sort(graph)
    assert [n.op_type for n in graph.node] == ["Relu", "Neg"]
    onnx.checker.check_model(h.make_model(graph))


# ---------------------------------------------------------------- no TensorRT installed


@pytest.fixture
def no_tensorrt(monkeypatch):
    for name in ("tensorrt", "tensorrt_rtx"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_load_trt_without_tensorrt_says_what_to_install(no_tensorrt):
    with pytest.raises(TensorRTUnavailable) as info:
        load_trt()
    message = str(info.value)
    assert "\n" not in message
    assert "python3-libnvinfer" in message and "JetPack" in message
    assert "pip install tensorrt" in message
    assert info.value.exit_code == EXIT_USER


def test_build_engine_without_tensorrt_fails_before_writing(no_tensorrt, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(TensorRTUnavailable):
        build_engine(onnx_file, tmp_path / "m.engine", mode="fp16-flags")
    assert not (tmp_path / "m.engine").exists()


def test_modules_import_without_tensorrt():
    code = (
        "import sys; sys.modules['tensorrt'] = None; sys.modules['tensorrt_rtx'] = None\n"
        "import exporters.tensorrt_build, edgeft.platform.tensorrt, exporters.tensorrt_calib\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


# ---------------------------------------------------------------- engine mismatch (dict logic)


def _record(flavour="tensorrt", version="10.3.0.30", gpu=("Orin", "8.7")):
    g = None
    if gpu:
        g = {"name": gpu[0], "compute_capability": gpu[1], "sm": "sm_" + gpu[1].replace(".", "")}
    return {"tensorrt": {"flavour": flavour, "version": version}, "device": {"gpu": g}}


def _here(name="Orin", cc="8.7"):
    return {"gpu": {"name": name, "compute_capability": cc, "sm": "sm_" + cc.replace(".", "")}}


def test_engine_check_accepts_same_tensorrt_and_gpu():
    check_engine_compatible(_record(), TRTInfo("tensorrt", "10.3.0.30"), device=_here())


@pytest.mark.parametrize(
    ("trt", "here", "expect"),
    [
        (TRTInfo("tensorrt", "8.5.2.2"), _here(), "TensorRT 8.5.2.2 / GPU Orin (sm_87)"),
        (TRTInfo("tensorrt", "10.3.0.30"), _here("Xavier", "7.2"), "GPU Xavier (sm_72)"),
        (TRTInfo("tensorrt", "10.3.0.30"), {"gpu": None}, "no visible GPU"),
        (TRTInfo("tensorrt_rtx", "1.7.1.116"), _here(), "TensorRT-RTX 1.7.1.116"),
    ],
)
def test_engine_check_refuses_other_tensorrt_or_gpu(trt, here, expect):
    with pytest.raises(EngineMismatch) as info:
        check_engine_compatible(_record(), trt, device=here, rebuild_hint="edgeft export --trt b/")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("engine built with TensorRT 10.3.0.30 on GPU Orin (sm_87); ")
    assert expect in message
    assert message.endswith("rebuild it on this device with `edgeft export --trt b/`")


def test_rtx_engine_check_compares_version_not_gpu():
    rec = _record("tensorrt_rtx", "1.7.1.116", gpu=None)
    check_engine_compatible(
        rec, TRTInfo("tensorrt_rtx", "1.7.1.116"), device=_here("RTX 4090", "8.9")
    )
    with pytest.raises(EngineMismatch, match="TensorRT-RTX 1.6.1.120"):
        check_engine_compatible(rec, TRTInfo("tensorrt_rtx", "1.6.1.120"), device=_here())


# ---------------------------------------------------------------- device description


def test_jetson_release_reads_l4t_and_model(tmp_path):
    assert device.jetson_release(tmp_path) is None
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: x\n"
    )
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson Orin Nano\x00")
    info = device.jetson_release(tmp_path)
    assert info["l4t"] == "36.4.3"
    assert info["model"] == "NVIDIA Jetson Orin Nano"


def test_probe_gpu_gives_each_probes_reason():
    def missing():
        raise device._NoGPU("not installed")

    def found():
        return device._gpu("NVIDIA H100", 9, 0, "fake")

    gpu, reason = device.probe_gpu((("a", missing), ("b", found)))
    assert gpu == {
        "name": "NVIDIA H100",
        "compute_capability": "9.0",
        "sm": "sm_90",
        "source": "fake",
    }
    assert reason is None
    gpu, reason = device.probe_gpu((("a", missing), ("b", missing)))
    assert gpu is None and "a: not installed" in reason and "b: not installed" in reason

    def no_driver():
        raise device._NoDriver("no NVIDIA driver here")

    gpu, reason = device.probe_gpu((("libcuda", no_driver), ("b", found)))
    assert gpu is None and reason == "no CUDA GPU visible (libcuda: no NVIDIA driver here)"


def test_describe_device_here_is_json_and_explains_a_missing_gpu():
    info = device.describe_device()
    json.dumps(info)
    if info["gpu"] is None:
        assert info["gpu_reason"].startswith("no CUDA GPU visible (libcuda:")
    else:
        assert info["gpu"]["sm"].startswith("sm_")


# ---------------------------------------------------------------- calibration cache


def test_calibration_cache_key_follows_model_preprocessing_and_trt():
    pre = {"size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    key = calib.calibration_cache_key("aa" * 32, pre, "10.3.0.30", "data1")
    assert key == calib.calibration_cache_key("aa" * 32, dict(pre), "10.3.1.1", "data1")
    assert key != calib.calibration_cache_key("bb" * 32, pre, "10.3.0.30", "data1")
    assert key != calib.calibration_cache_key("aa" * 32, {**pre, "size": 192}, "10.3.0.30", "data1")
    assert key != calib.calibration_cache_key("aa" * 32, pre, "8.5.2.2", "data1")
    assert key != calib.calibration_cache_key("aa" * 32, pre, "10.3.0.30", "data2")


def test_calibration_cache_is_read_only_for_its_key(tmp_path):
    cache = tmp_path / "calib.cache"
    assert calib.read_cache(cache, "k1") is None
    calib.write_cache(cache, "k1", b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    assert calib.read_cache(cache, "k1").startswith(b"TRT-100300")
    assert calib.read_cache(cache, "k2") is None
    cache.with_name("calib.cache.key.json").unlink()
    assert calib.read_cache(cache, "k1") is None  # a cache of unknown origin is not trusted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.cache"]  # no temp files left


def test_rebatch_regroups_to_the_first_batch_size():
    parts = [np.full((3, *CHW), i, np.float32) for i in range(3)] + [
        np.zeros((2, *CHW), np.float32)
    ]
    out = list(calib.rebatch(parts, CHW))
    assert [b.shape[0] for b in out] == [3, 3, 3]  # 11 images -> three batches of 3, 2 dropped
    out = list(
        calib.rebatch([np.zeros((4, *CHW), np.float32)] + [np.ones((2, *CHW), np.float32)] * 3, CHW)
    )
    assert [b.shape[0] for b in out] == [4, 4]
    assert out[0].max() == 0 and out[1].min() == 1  # 10 images -> two batches of 4, 2 dropped
    with pytest.raises(ValueError, match="float32"):
        list(calib.rebatch([np.zeros((2, *CHW), np.float64)], CHW))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        list(calib.rebatch([np.zeros((2, 3, 16, 16), np.float32)], CHW))


def test_entropy_calibrator_feeds_counts_and_caches_with_a_fake_tensorrt(tmp_path, monkeypatch):
    # The calibrator's own logic, with TensorRT's base class and the GPU buffer faked:
    # the real thing runs in the tensorrt+gpu tests below.
    class Base:
        def __init__(self):
            pass

    events = []

    class Buffer:
        def upload(self, array):
            events.append(array.shape)
            return 0xDEAD

        def free(self):
            events.append("free")

    monkeypatch.setattr(calib, "allocate_device_buffer", lambda nbytes: (Buffer(), "fake"))
    fake_trt = types.SimpleNamespace(IInt8EntropyCalibrator2=Base)
    cache = tmp_path / "calib.cache"
    batches = calib.rebatch(_calib_inputs(3, 4), CHW)
    cal = calib.make_entropy_calibrator(fake_trt, batches, cache, "k1")
    assert cal.read_calibration_cache() is None and cal.get_batch_size() == 1
    assert [cal.get_batch(["input"]) for _ in range(4)] == [[0xDEAD]] * 3 + [None]
    assert (cal.batches, cal.images, cal.backend, cal.error) == (3, 12, "fake", None)
    cal.write_calibration_cache(memoryview(b"TRT-100300-EntropyCalibration2\n"))
    cal.free()
    assert events == [(4, *CHW)] * 3 + ["free"]
    assert calib.read_cache(cache, "k1") == b"TRT-100300-EntropyCalibration2\n"
    again = calib.make_entropy_calibrator(fake_trt, None, cache, "k1")
    assert again.read_calibration_cache().startswith(b"TRT-") and again.get_batch(["input"]) is None
    bad = [np.zeros((4, *CHW), np.float32), np.zeros((4, *CHW), np.float64)]
    broken = calib.make_entropy_calibrator(fake_trt, calib.rebatch(bad, CHW), None, None)
    assert broken.get_batch(["input"]) == [0xDEAD] and broken.get_batch(["input"]) is None
    assert isinstance(broken.error, ValueError) and "float32" in str(broken.error)


# ---------------------------------------------------------------- TensorRT-RTX: strongly typed, for real


def _check_plan(record, path):
    data = Path(path).read_bytes()
    assert len(data) > 10_000
    assert record["engine"]["bytes"] == len(data)
    assert record["engine"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not [p for p in Path(path).parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.rtx
@needs_rtx
def test_rtx_builds_fp16_engine_from_fp16_onnx(fp16_onnx, tmp_path):
    plan = tmp_path / "engines" / "model.fp16.engine"
    rec = build_engine(
        fp16_onnx,
        plan,
        mode="strongly-typed",
        min_batch=1,
        opt_batch=4,
        max_batch=8,
        workspace_mib=256,
        timing_cache=tmp_path / "timing.cache",
    )
    _check_plan(rec, plan)
    assert rec["tensorrt"]["flavour"] == "tensorrt_rtx"
    assert rec["precision"] == "from-onnx" and rec["warnings"] == []
    assert rec["profile"] == {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}
    assert rec["input"] == {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "FLOAT"}
    dtypes = rec["network"]["tensor_dtypes"]
    assert dtypes["HALF"] >= 8 and rec["network"]["qdq_layers"] == 0  # convs, pools, gemm in FP16
    assert rec["timing_cache"]["used"] is False  # a no-op in TensorRT-RTX, said so
    json.dumps(rec)
    check_engine_compatible(rec)  # same TensorRT-RTX here


@pytest.mark.rtx
@needs_rtx
def test_rtx_builds_int8_engine_from_qdq_onnx(qdq_onnx, fp16_onnx, tmp_path):
    rec = build_engine(qdq_onnx, tmp_path / "m.int8.engine", mode="strongly-typed", max_batch=2)
    _check_plan(rec, tmp_path / "m.int8.engine")
    assert rec["network"]["qdq_layers"] >= 10
    assert rec["network"]["tensor_dtypes"]["INT8"] >= 5
    fp16 = build_engine(fp16_onnx, tmp_path / "m.fp16.engine", mode="strongly-typed", max_batch=2)
    assert rec["engine"]["sha256"] != fp16["engine"]["sha256"]


@pytest.mark.rtx
@needs_rtx
def test_rtx_fp32_onnx_builds_but_warns_it_is_fp32(fp32_onnx, tmp_path):
    rec = build_engine(fp32_onnx, tmp_path / "m.engine", mode="strongly-typed")
    assert rec["warnings"] == [
        "strongly typed network has no FP16 or INT8 tensors: the engine is FP32"
    ]


@pytest.mark.rtx
@needs_rtx
@pytest.mark.parametrize("mode", ["fp16-flags", "int8-flags"])
def test_rtx_refuses_builder_flags_pointing_to_strong_typing(fp32_onnx, tmp_path, mode):
    with pytest.raises(TensorRTBuildError, match="no FP16/INT8 builder flags.*strongly typed path"):
        build_engine(fp32_onnx, tmp_path / "m.engine", mode=mode)
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.rtx
@needs_rtx
def test_rtx_parse_errors_are_one_clear_line(fp32_onnx, onnx_dir, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(Path(fp32_onnx).read_bytes()[:3000])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("this is not an onnx model")
    int32_bias = _quantize(fp32_onnx, onnx_dir / "tiny.qdq-int32bias.onnx", quantize_bias=True)
    cases = [
        (truncated, "Failed to parse the ONNX model"),
        (garbage, "holds no graph"),
        (int32_bias, "bias_DequantizeLinear.*Int32"),
        (tmp_path / "missing.onnx", "ONNX file not found"),
    ]
    for path, pattern in cases:
        with pytest.raises(TensorRTBuildError, match=pattern) as info:
            build_engine(path, tmp_path / "m.engine", mode="strongly-typed")
        assert "\n" not in str(info.value)
        assert not (tmp_path / "m.engine").exists()


@pytest.mark.rtx
@needs_rtx
def test_rtx_dla_and_profile_errors(fp16_onnx, tmp_path):
    with pytest.raises(TensorRTBuildError, match="no DLA"):
        build_engine(fp16_onnx, tmp_path / "m.engine", mode="strongly-typed", dla_core=0)
    with pytest.raises(TensorRTBuildError, match="1 <= min <= opt <= max"):
        build_engine(
            fp16_onnx, tmp_path / "m.engine", mode="strongly-typed", opt_batch=4, max_batch=2
        )


@pytest.mark.rtx
@pytest.mark.gpu
@needs_rtx
def test_rtx_engine_deserializes_on_a_gpu(fp16_onnx, tmp_path):
    # Deserializing needs the CUDA driver (on a CPU-only machine TensorRT-RTX reports
    # cudaError 35, "CUDA driver version is insufficient"), so this runs where a GPU is.
    _gpu_or_skip()
    import tensorrt_rtx as trt

    rec = build_engine(fp16_onnx, tmp_path / "m.engine", mode="strongly-typed", max_batch=4)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine((tmp_path / "m.engine").read_bytes())
    assert engine is not None
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["input", "logits"]
    check_engine_compatible(rec)


# ---------------------------------------------------------------- TensorRT 8.5-10.x: builder flags + calibrator


@pytest.fixture
def trt_gpu():
    if not HAS_TRT:
        pytest.skip("the tensorrt Python package is not installed (JetPack: python3-libnvinfer)")
    _gpu_or_skip()
    import tensorrt

    return tensorrt


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_trt_fp16_flags_build_with_timing_cache(trt_gpu, fp32_onnx, tmp_path):
    cache = tmp_path / "timing.cache"
    rec = build_engine(
        fp32_onnx,
        tmp_path / "a.engine",
        mode="fp16-flags",
        max_batch=4,
        workspace_mib=256,
        timing_cache=cache,
        trt=trt_gpu,
    )
    _check_plan(rec, tmp_path / "a.engine")
    assert rec["precision"] == "fp16" and rec["device"]["gpu"]["sm"].startswith("sm_")
    assert cache.stat().st_size > 0
    again = build_engine(
        fp32_onnx,
        tmp_path / "b.engine",
        mode="fp16-flags",
        max_batch=4,
        timing_cache=cache,
        trt=trt_gpu,
    )
    assert again["timing_cache"]["loaded_bytes"] > 0
    check_engine_compatible(rec, trt_gpu)
    engine = trt_gpu.Runtime(trt_gpu.Logger()).deserialize_cuda_engine(
        (tmp_path / "a.engine").read_bytes()
    )
    assert engine is not None


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_trt_int8_flags_calibrates_then_reuses_its_cache(trt_gpu, fp32_onnx, tmp_path):
    if not hasattr(trt_gpu, "IInt8EntropyCalibrator2"):
        pytest.skip(f"TensorRT {trt_gpu.__version__} has no calibrators (removed in 11)")
    cache = tmp_path / "calib.cache"
    kw = dict(mode="int8-flags", max_batch=4, calib_cache=cache, trt=trt_gpu)
    rec = build_engine(
        fp32_onnx, tmp_path / "a.engine", calib_batches=_calib_inputs(), calib_key="k1", **kw
    )
    c = rec["calibration"]
    assert (c["batches"], c["images"], c["reused_cache"], c["cache_written"]) == (
        3,
        12,
        False,
        True,
    )
    assert cache.read_bytes().startswith(b"TRT-")
    again = build_engine(fp32_onnx, tmp_path / "b.engine", calib_key="k1", **kw)
    assert again["calibration"]["reused_cache"] is True
    with pytest.raises(TensorRTBuildError, match="needs calibration images"):
        build_engine(fp32_onnx, tmp_path / "c.engine", calib_key="other-model", **kw)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_trt_int8_flags_takes_qdq_without_calibrator(trt_gpu, qdq_onnx, tmp_path):
    if not hasattr(trt_gpu.BuilderFlag, "INT8"):
        pytest.skip(f"TensorRT {trt_gpu.__version__} has no INT8 flag (removed in 11)")
    rec = build_engine(qdq_onnx, tmp_path / "q.engine", mode="int8-flags", trt=trt_gpu)
    assert rec["quantization"] == "explicit Q/DQ from the ONNX"
    _check_plan(rec, tmp_path / "q.engine")
