"""The prepared CUDA run (benchmarks/studies/cuda_check.py) and bench's CUDA timing.

Without a GPU: the dry run passes for real (wheels downloaded from PyPI into the ignored
``.cuda_carry/`` and kept between runs), fails in one line on a missing wheel or a typo'd
command, and the run's own machinery (install, steps, time limit, results, collect) runs
with CPU steps in place of the GPU ones. ``benchmarks.latency``'s CUDA path is checked with
a stand-in for ``torch.cuda`` here, and for real by the ``gpu`` tests on a GPU machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from benchmarks import latency
from benchmarks.studies import ROOT, cuda_check, cuda_plan, cuda_wheels
from edgeft.errors import UserError
from tests.conftest import ASSETS, EUROSAT, MOBILENET_V2_WEIGHTS, make_color_dataset, needs_assets

CARRY = ROOT / cuda_plan.CARRY


def _study(*args, timeout=300):
    env = {"PATH": "/usr/bin:/bin", "EDGEFT_ASSETS": str(ASSETS), "HOME": str(Path.home())}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.studies.cuda_check", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def prepared():
    """``.cuda_carry/`` filled by ``--prepare`` (only missing wheels are downloaded)."""
    if not (EUROSAT.exists() and MOBILENET_V2_WEIGHTS.exists()):
        pytest.skip(f"real assets absent under {ASSETS} (set EDGEFT_ASSETS)")
    proc = _study("--prepare")
    assert proc.returncode == 0, proc.stderr
    return CARRY


# -- the dry run ------------------------------------------------------------------------------


@needs_assets(EUROSAT, MOBILENET_V2_WEIGHTS)
def test_dry_run_passes_on_the_prepared_carry(prepared):
    proc = _study("--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"ok  wheels: {len(cuda_wheels.WHEELS)} for CPython 3.12")
    assert "EuroSAT-200 2000 images in 10 classes" in lines[1]
    mib = float(lines[2].split()[2])
    assert 20 < mib < 48  # data 7 MB + weights 14 MB + wheels ~5 MB + the tree, far under 64
    assert "each carried or on the GPU machine" in lines[3]
    assert "finetune-resnet50-fp32" in lines[4] and "bench-mobilenet_v2" in lines[4]
    assert lines[5].startswith("ok  GPU tests: ")


@needs_assets(EUROSAT, MOBILENET_V2_WEIGHTS)
def test_a_missing_wheel_fails_the_dry_run_in_one_line(prepared, tmp_path):
    carry = tmp_path / "carry"
    (carry / "wheels").mkdir(parents=True)
    for w in (prepared / "wheels").glob("*.whl"):
        if not w.name.startswith("fastai-"):
            (carry / "wheels" / w.name).symlink_to(w)
    (carry / "assets").symlink_to(prepared / "assets")
    proc = _study("--dry-run", "--carry", carry, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("cuda_check: error: missing wheel fastai==2.8.12 in ")


def test_a_typo_in_a_planned_command_fails_naming_step_and_option(tmp_path):
    feats = cuda_plan.features()
    steps = {s.name: s for s in cuda_plan.build_plan(tmp_path, tmp_path, feats)}
    for step in steps.values():
        cuda_plan.parse_step(step)  # the plan as written parses
    bench = steps["bench-resnet50"]
    bench.argv = [a.replace("--batch-sizes", "--batch-size") for a in bench.argv]
    with pytest.raises(
        UserError, match=r"^step bench-resnet50: edgeft bench: No such option: --batch-size"
    ):
        cuda_plan.parse_step(bench)
    ft = steps["finetune-mobilenet_v2-fp32"]
    ft.argv = [a.replace("discriminative", "discriminativ") for a in ft.argv]
    with pytest.raises(UserError, match=r"^step finetune-mobilenet_v2-fp32: .*discriminativ"):
        cuda_plan.parse_step(ft)  # found by FinetuneOptions.validate(), not click
    bench.argv = [a.replace("torch-cl", "torch-c1") for a in steps["bench-mobilenet_v2"].argv]
    with pytest.raises(UserError, match="unknown backend 'torch-c1'"):
        cuda_plan.parse_step(bench)
    if "accelerate-launch" in steps:
        acc = steps["accelerate-launch"]
        acc.argv = [a.replace("--num_processes", "--num_proceses") for a in acc.argv]
        with pytest.raises(
            UserError, match="^step accelerate-launch: accelerate launch: .*num_proceses"
        ):
            cuda_plan.parse_step(acc)


def _wheel(path: Path, name: str, version: str, requires=()) -> Path:
    """A minimal real wheel file: one module and a dist-info (METADATA, WHEEL, RECORD)."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    files = {
        f"{name.replace('-', '_')}_probe.py": "VALUE = 1\n",
        f"{info}/METADATA": "\n".join(meta + [f"Requires-Dist: {r}" for r in requires]) + "\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
    return path


def test_wheel_set_checks(prepared, tmp_path):
    wheels = [cuda_wheels.read_wheel(p) for p in sorted((prepared / "wheels").glob("*.whl"))]
    assert cuda_wheels.unmet(wheels) == []
    # spaCy is declared by fastai but never imported by fastai.vision: not carried, on purpose
    fastai = next(w for w in wheels if w.name == "fastai")
    assert "spacy" in {r.name for r in fastai.requires} and "spacy" in cuda_wheels.NOT_CARRIED
    odd = cuda_wheels.read_wheel(
        _wheel(tmp_path / "odd-1.0-py3-none-any.whl", "odd", "1.0", ["torch<2", "nosuchpkg>=1"])
    )
    problems = cuda_wheels.unmet([odd])
    assert problems == [
        "odd-1.0-py3-none-any.whl needs torch<2, but torch is 2.11.0",
        "odd-1.0-py3-none-any.whl needs nosuchpkg>=1: neither carried nor on the machine",
    ]
    # markers are evaluated for CPython 3.12 on Linux: a Windows-only need does not count
    win = _wheel(
        tmp_path / "win-1.0-py3-none-any.whl", "win", "1.0", ['pywin32; sys_platform == "win32"']
    )
    assert cuda_wheels.unmet([cuda_wheels.read_wheel(win)]) == []
    old = _wheel(tmp_path / "old-1.0-cp311-cp311-manylinux2014_x86_64.whl", "old", "1.0")
    assert not cuda_wheels.read_wheel(old).tags & cuda_wheels.supported_tags()


def test_trace_flags_an_import_nobody_carries():
    with pytest.raises(
        UserError, match=r"^spacy is imported \(spacy\) but listed as never imported"
    ):
        cuda_wheels.check_trace({"spacy": "spacy"})
    with pytest.raises(UserError, match=r"^leftpad is imported by the run \(leftpad.core\)"):
        cuda_wheels.check_trace({"leftpad": "leftpad.core"})
    cuda_wheels.check_trace({"fastai": "fastai", "torch": "torch", "pydot": "pydot", "edgeft": "x"})


def test_install_puts_only_what_is_missing_into_the_target(prepared, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for w in (prepared / "wheels").glob("*.whl"):
        if w.name.startswith(("fastai-", "typing_extensions-")):
            (wheels / w.name).symlink_to(w)
    _wheel(wheels / "edgeft_cuda_probe-1.0-py3-none-any.whl", "edgeft-cuda-probe", "1.0")
    got = cuda_wheels.install(wheels, tmp_path / "site")
    # fastai and typing-extensions are installed here in the carried versions: left alone
    assert got["installed"] == ["edgeft_cuda_probe-1.0-py3-none-any.whl"]
    assert set(got["already_there"]) == {"fastai", "typing-extensions"}
    assert (tmp_path / "site" / "edgeft_cuda_probe_probe.py").is_file()
    # fastai's own needs are met by what is installed here, spaCy aside (never imported)
    assert got["unmet"] == []


# -- the run's machinery, with CPU steps in place of the GPU ones ----------------------------


def test_a_step_past_its_time_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); print('started', flush=True); "
        "time.sleep(60)"
    )
    step = cuda_plan.Step("sleepy-step", ["-c", code], 60)
    rec = cuda_check._run_step(step, {"PATH": "/usr/bin:/bin"}, 3, tmp_path)
    assert rec["status"] == "timeout" and rec["reason"] == "killed after 3 s"
    assert 3 <= rec["seconds"] < 15
    child = Path(f"/proc/{pid_file.read_text()}/status")

    def gone() -> bool:
        try:
            return "zombie" in child.read_text()
        except FileNotFoundError:
            return True

    # SIGKILL to the group lands asynchronously: CI once read the child still "R (running)",
    # already reparented to init, a moment after the kill
    deadline = time.time() + 5
    while not gone() and time.time() < deadline:
        time.sleep(0.05)
    assert gone()  # the whole group was killed
    failed = cuda_check._run_step(
        cuda_plan.Step("bad-step", ["-c", "import sys; sys.exit('one clear line')"], 60),
        {"PATH": "/usr/bin:/bin"},
        30,
        tmp_path,
    )
    assert failed["status"] == "failed" and failed["rc"] == 1
    assert failed["last_line"] == "one clear line"


def _cpu_plan(tmp_path):
    """Steps of the same kinds as the GPU plan's, sized for this CPU."""
    data = make_color_dataset(tmp_path / "colors", n_per_class=6, size=32)

    def plan(work, results, feats, workers=8):
        bundle = work / "mobilenet_v2-fp32"
        ft = ["-m", "edgeft", "finetune", "--data", str(data), "--arch", "mobilenet_v2"]
        ft += ["--out", str(bundle), "--no-pretrained", "--strategy", "full", "--size", "32"]
        ft += ["--epochs", "1", "--batch-size", "8", "--quiet"]
        bench = ["-m", "edgeft", "bench", str(bundle), "--backends", "torch", "--batch-sizes", "1"]
        bench += [
            "--runs",
            "3",
            "--warmup",
            "1",
            "--no-e2e",
            "--out",
            str(results / "bench-mobilenet_v2"),
        ]
        bench += ["--quiet"]
        tests = ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
        tests += ["tests/benchmarks/test_bench_units.py::test_parse_lists"]
        tests += ["--junitxml", str(results / "pytest-gpu.xml")]
        meta = {"arch": "mobilenet_v2", "precision": "fp32", "bundle": str(bundle)}
        return [
            cuda_plan.Step("env", ["-m", "edgeft", "env", "--json"], 60, stdout="env.json"),
            cuda_plan.Step("finetune-mobilenet_v2-fp32", ft, 300, meta),
            cuda_plan.Step(
                "bench-mobilenet_v2",
                bench,
                300,
                {"arch": "mobilenet_v2", "report": "bench-mobilenet_v2/report.json"},
            ),
            cuda_plan.Step("pytest-gpu", tests, 120),
        ]

    return plan


@pytest.mark.slow  # about a minute: a tiny fine-tune, a bench and pytest in subprocesses
@needs_assets(EUROSAT, MOBILENET_V2_WEIGHTS)
def test_the_run_installs_runs_steps_records_and_collects(prepared, tmp_path, monkeypatch):
    facts = {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "cuda": "13.0", "driver": "580.159.04"}
    monkeypatch.setattr(cuda_check, "_gpu_facts", lambda: facts)
    monkeypatch.setattr(cuda_plan, "build_plan", _cpu_plan(tmp_path))
    monkeypatch.setattr(cuda_check, "MIN_STEP_S", 5)
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "out"
    import time

    t0 = time.monotonic()
    record = cuda_check.run(out, budget_s=200, workers=0, work=tmp_path / "work")
    steps = {s["name"]: s for s in record["steps"]}
    assert [s["status"] for s in record["steps"]][:4] == ["ok"] * 4, record["steps"]
    # what the machine already has is not installed again (here: everything)
    assert record["install"]["installed"] == [] and record["install"]["unmet"] == []
    ft = steps["finetune-mobilenet_v2-fp32"]["figures"]
    assert (
        ft["n_train"] + ft["n_valid"] == 18 and ft["epochs"] == 1 and ft["steady_images_per_s"] > 0
    )
    lat = steps["bench-mobilenet_v2"]["figures"]["latency"]
    assert lat[0]["backend"] == "torch" and lat[0]["timer"] == "perf_counter"  # CPU: wall clock
    assert lat[0]["peak_allocated_mib"] is None
    assert steps["pytest-gpu"]["figures"]["tests"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "cuda_check.json",
        "results.tar.gz",
        "summary.md",
    ]
    assert json.loads((out / "cuda_check.json").read_text())["gpu"] == facts
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# CUDA check: NVIDIA H200") and "| env | ok |" in summary
    assert time.monotonic() - t0 < 200
    dest = cuda_check.collect(out, tmp_path / "results")
    assert dest.name == "cuda_h200"
    env = json.loads((dest / "env.json").read_text())
    assert env["python"] and (dest / "bench-mobilenet_v2" / "report.md").is_file()
    assert (dest / "step_logs" / "finetune-mobilenet_v2-fp32.log").is_file()
    # Out of time: steps are skipped, not started, and the results still written.
    late = cuda_check.run(tmp_path / "late", budget_s=1, workers=0, work=tmp_path / "late-work")
    assert {s["status"] for s in late["steps"]} == {"skipped"}
    assert late["steps"][0]["reason"] == "out of time"
    assert (tmp_path / "late" / "summary.md").is_file()


# -- benchmarks.latency's CUDA path, with a stand-in for torch.cuda ------------------------


class _FakeCuda:
    """Stands in for ``torch.cuda`` (none here): a clock the runner advances, events that
    read it, an allocator whose peak the runner raises."""

    def __init__(self):
        self.clock_ms, self.log = 0.0, []
        self.allocated, self.peak = 1000, 1000

    def Event(self, enable_timing=False):  # noqa: N802  (torch's name)
        cuda = self

        class Event:
            def record(self):
                cuda.log.append("record")
                self.t = cuda.clock_ms

            def synchronize(self):
                cuda.log.append("event-sync")

            def elapsed_time(self, end):
                return end.t - self.t

        assert enable_timing
        return Event()

    def synchronize(self):
        self.log.append("sync")

    def reset_peak_memory_stats(self):
        self.peak = self.allocated

    def memory_allocated(self):
        return self.allocated

    def max_memory_allocated(self):
        return self.peak

    def max_memory_reserved(self):
        return 2 * self.peak


class _CudaRunner:
    device = "cuda"

    def __init__(self, cuda):
        self.cuda = cuda

    def describe(self):
        return {"framework": "pytorch"}

    def infer(self, x):
        self.cuda.log.append("infer")
        self.cuda.clock_ms += 2.5
        self.cuda.peak = max(self.cuda.peak, self.cuda.allocated + 100 * len(x))
        return x

    def synchronize(self):
        self.cuda.synchronize()


def test_cuda_events_time_each_call_and_peak_memory_is_per_backend(monkeypatch):
    from edgeft.preprocess import Preprocessing

    cuda = _FakeCuda()
    runner = _CudaRunner(cuda)
    timer = latency.CudaEventTimer(cuda)
    assert latency.time_calls(lambda: runner.infer([0]), warmup=1, runs=2, timer=timer) == [
        2.5,
        2.5,
    ]
    # warm-up untimed; then per call: sync, start event, call, end event, wait for it
    assert cuda.log == ["infer"] + ["sync", "record", "infer", "record", "event-sync"] * 2

    class _Cpu:
        def infer(self, x):
            return x

    monkeypatch.setattr(
        latency, "cuda_module", lambda r: cuda if isinstance(r, _CudaRunner) else None
    )
    pp = Preprocessing(size=(4, 4), mean=(0, 0, 0), std=(1, 1, 1))
    x = np.zeros((2, 3, 4, 4), np.float32)
    targets = [latency.Target("gpu", runner, x, [], pp), latency.Target("cpu", _Cpu(), x, [], pp)]
    out = latency.measure(targets, [1, 8], warmup=1, runs=4, rounds=2, e2e=False)
    by = {(e["backend"], e["batch_size"]): e for e in out}
    for bs in (1, 8):
        gpu = by[("gpu", bs)]
        assert gpu["model"]["timer"] == "cuda-events" and gpu["model"]["samples_ms"] == [2.5] * 4
        assert gpu["gpu_memory"]["model"] == {
            "peak_allocated_bytes": 1000 + 100 * bs,
            "peak_reserved_bytes": 2 * (1000 + 100 * bs),
            "resident_bytes": 1000,
            "working_bytes": 100 * bs,
        }
        cpu = by[("cpu", bs)]
        assert "timer" not in cpu["model"] and "gpu_memory" not in cpu  # the CPU path unchanged


def test_cpu_and_non_pytorch_runners_never_touch_torch_cuda(monkeypatch):
    class Runner:
        def __init__(self, device, framework):
            self.device, self.framework = device, framework

        def describe(self):
            return {"framework": self.framework}

    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch would now fail
    assert latency.cuda_module(Runner("cpu", "pytorch")) is None
    assert latency.cuda_module(Runner("cuda", "onnxruntime")) is None
    assert latency.cuda_module(object()) is None
    monkeypatch.undo()
    import torch

    if not torch.cuda.is_available():  # a PyTorch runner asked for CUDA on a CPU machine
        assert latency.cuda_module(Runner("cuda", "pytorch")) is None


# -- on a GPU machine ---------------------------------------------------------------------


@pytest.mark.gpu
def test_real_cuda_events_and_peak_memory():
    import time

    import torch

    a = torch.randn(4096, 4096, device="cuda")
    mem = latency.GpuMemory(torch.cuda)
    timer = latency.CudaEventTimer(torch.cuda)
    with mem.segment():
        t0 = time.perf_counter()
        ms = timer.time(lambda: (a @ a).sum().item())
        wall = (time.perf_counter() - t0) * 1e3
    assert 0 < ms <= wall + 0.5  # the events bracket the call; the wall clock adds the sync
    got = mem.result()
    assert got["resident_bytes"] >= a.numel() * 4
    assert got["working_bytes"] >= a.numel() * 4  # the product's output
