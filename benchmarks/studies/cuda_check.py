"""The CUDA path, verified for real: fine-tune, export and bench on a GPU in one command.

Three modes:

* ``--prepare`` (here, with PyPI): download the wheels the GPU machine lacks for CPython
  3.12 manylinux x86-64 (:mod:`benchmarks.studies.cuda_wheels`) and copy EuroSAT-200 and
  the MobileNetV2 checkpoint from the shared assets into ``.cuda_carry/`` (ignored by git).
* ``--dry-run`` (any CPU machine, the test suite): check the plan without a GPU: wheels
  present, installable on 3.12 and their requirements met by the wheel set plus the GPU
  machine's packages; everything the run imports carried or there; the data and weights
  intact; under the 64 MiB that travels; every command parsed by its own parser (edgeft
  commands by their click command and options ``validate()``, ``accelerate launch`` by
  accelerate's) and the GPU tests collected. Any failure: one line, exit 2.
* ``--run`` (the default, on the GPU machine): install the carried wheels it lacks into
  ``.cuda_carry/site`` (pip ``--target``: the machine's own environment is untouched),
  then, within ``--budget`` seconds, the steps of
  :func:`benchmarks.studies.cuda_plan.build_plan`, most telling first: ``edgeft env``;
  EuroSAT-200 fine-tunes at 224 px, batch 64, of MobileNetV2 (the carried ImageNet
  checkpoint, 1 frozen + 3 epochs) and ResNet-50 (random init, 6 epochs: its ImageNet
  weights are not available offline and, at 98 MB, would not fit what travels) in fp32,
  fp16 and bf16 (``--precision``); ``edgeft bench --device cuda`` of both fp32 bundles
  with torch, torch-fp16 and torch-cl at batch 1, 8 and 64 (CUDA events, peak GPU
  memory, the parity ladder against FP32); ``pytest -m gpu`` (TensorRT tests deselected:
  there is no TensorRT there, so the TensorRT runner and calibrator stay unverified on a
  GPU); an ONNX export of a CUDA-trained bundle; ``accelerate launch --num_processes 1 -m
  edgeft finetune`` (one process: with one GPU no process group, so no nccl, is formed).
  Writes three files into ``--out`` (the device tool brings back at most 8):
  ``cuda_check.json`` (everything), ``summary.md`` and ``results.tar.gz`` (bench
  reports, logs, JUnit XML), rewritten after every step so a run cut short keeps what it
  did. A failed step is recorded and the run goes on.
* ``--collect DIR`` (here, after the run): file those files under
  ``benchmarks/results/cuda_<gpu>/``.

Before the call, here: ``python -m benchmarks.studies.cuda_check --prepare``, then
``--dry-run``. The device tool's call (one command, 8 of the session's 15 minutes)::

    run(command="PYTHONUNBUFFERED=1 python3 -m benchmarks.studies.cuda_check --run --out $OUT --budget 450",
        carry=[".cuda_carry"], timeout_s=540)

then: ``python -m benchmarks.studies.cuda_check --collect <files_at>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.studies import RESULTS, ROOT
from benchmarks.studies import cuda_plan as plan
from edgeft.errors import UserError

RESERVE_S = 20  # kept back from the budget to write the results
MIN_STEP_S = 30  # a step with less time left is skipped, not started


def prepare(assets: Path, carry: Path = plan.CARRY) -> None:
    """Fill ``carry`` (``.cuda_carry/``: wheels and assets) and print what will travel."""
    from benchmarks.studies import cuda_wheels

    paths = cuda_wheels.download(ROOT / carry / "wheels")
    plan.prepare_assets(assets, ROOT / carry / "assets")
    size = plan.travelling_bytes(carry)
    print(f"{len(paths)} wheels in {carry}; {size['total_bytes'] / 2**20:.1f} MiB travel")


def dry_run(work: Path, out: Path, carry: Path = plan.CARRY) -> list[str]:
    """Check the plan without a GPU; returns one line per check passed.

    Raises:
        UserError: the first check that fails, in one line.
    """
    from benchmarks.studies import cuda_wheels

    done = []
    wheels = cuda_wheels.check_wheels(ROOT / carry / "wheels")
    mib = sum(w.size for w in wheels) / 2**20
    done.append(f"wheels: {len(wheels)} for CPython 3.12 manylinux x86-64, {mib:.1f} MiB")
    a = plan.check_assets(ROOT / carry / "assets")
    done.append(f"assets: EuroSAT-200 {a['images']} images in {a['classes']} classes, weights ok")
    size = plan.travelling_bytes(carry)
    done.append(f"size: {size['total_bytes'] / 2**20:.1f} MiB travel (limit 64)")
    tests = [f[:-3].replace("/", ".") for f in plan.gpu_test_files()]
    imported = cuda_wheels.trace_imports(ROOT, tuple(tests))
    cuda_wheels.check_trace(imported)
    done.append(f"imports: {len(imported)} distributions, each carried or on the GPU machine")
    feats = plan.features()
    steps = plan.build_plan(work, out, feats, carry=carry)
    for step in steps:
        plan.parse_step(step)
    done.append(f"commands: {len(steps)} steps parse ({', '.join(s.name for s in steps)})")
    done.append(f"GPU tests: {collect_gpu_tests()} collected ({plan.GPU_TESTS})")
    done += [f"not run: {what} ({why})" for what, why in plan.skipped(feats).items()]
    return done


def collect_gpu_tests() -> int:
    """Collect the GPU tests as the run selects them; the number collected.

    Raises:
        UserError: collection failed or selected nothing.
    """
    files = plan.gpu_test_files()
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        cmd + ["-m", plan.GPU_TESTS, *files], cwd=ROOT, capture_output=True, text=True
    )
    ids = [ln for ln in proc.stdout.splitlines() if "::" in ln]
    if proc.returncode != 0 or not ids:
        last = (proc.stdout.strip().splitlines() or ["nothing collected"])[-1]
        raise UserError(f"collecting the GPU tests failed: {last}")
    return len(ids)


def _run_step(step: plan.Step, env: dict, timeout: float, results: Path) -> dict:
    """Run one step (its own process group, killed whole at the timeout)."""
    log = results / "step_logs" / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    rec = {"name": step.name, "argv": step.argv, "timeout_s": round(timeout), **step.meta}
    t0 = time.monotonic()
    with open(log, "w") as err, open(results / step.stdout if step.stdout else log, "a") as so:
        proc = subprocess.Popen(
            [sys.executable, *step.argv],
            cwd=ROOT,
            env=env,
            stdout=so,
            stderr=err,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            rec["reason"] = f"killed after {timeout:.0f} s"
    rec.update(rc=rc, seconds=round(time.monotonic() - t0, 2))
    rec["status"] = "ok" if rc == 0 else "timeout" if "reason" in rec else "failed"
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    rec["last_line"] = lines[-1][:300] if lines and rc != 0 else None
    _add_figures(rec, step, results)
    return rec


def _add_figures(rec: dict, step: plan.Step, results: Path) -> None:
    from benchmarks.studies import cuda_report as report

    kind = step.name.split("-")[0]
    rec["kind"] = {"accelerate": "finetune"}.get(kind, kind)
    try:
        if rec["kind"] == "finetune" and rec["status"] == "ok":
            rec["figures"] = report.finetune_figures(Path(step.meta["bundle"]))
        elif rec["kind"] == "bench" and (results / step.meta["report"]).is_file():
            rec["figures"] = report.bench_figures(results / step.meta["report"])
        elif rec["kind"] == "pytest" and (results / "pytest-gpu.xml").is_file():
            rec["figures"] = report.pytest_figures(results / "pytest-gpu.xml")
    except (OSError, KeyError, ValueError) as exc:  # a result file not as expected: say so
        rec["figures_error"] = f"{type(exc).__name__}: {exc}"


def _publish(record: dict, results: Path, out: Path) -> None:
    """Write the three result files into ``out`` (each replaced atomically)."""
    from benchmarks.studies import cuda_report as report
    from edgeft.atomic import write_bytes_atomic, write_json_atomic

    record["speedups"] = report.speedups(record["steps"])
    write_json_atomic(out / "cuda_check.json", record)
    write_bytes_atomic(out / "summary.md", report.summary_md(record).encode())
    tmp = out / ".results.tar.gz"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(results, arcname=".")
    os.replace(tmp, out / "results.tar.gz")


def _gpu_facts() -> dict:
    import torch

    if not torch.cuda.is_available():
        raise UserError(
            "no CUDA GPU visible to torch: --run is for the GPU machine (--dry-run here)"
        )
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    smi = subprocess.run(query, capture_output=True, text=True) if shutil.which(query[0]) else None
    return {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "driver": smi.stdout.strip().splitlines()[0] if smi and smi.returncode == 0 else None,
        "python": sys.version.split()[0],
    }


def _workers(requested: int) -> tuple[int, str]:
    """DataLoader workers the machine can feed: worker processes hand batches over through
    /dev/shm, which a VM may keep small (64 batches of 224 px images are ~10 MB each)."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = 0
    if requested and free < 2 * 2**30:
        return 0, f"/dev/shm has {free / 2**20:.0f} MiB free: loading in the main process"
    return requested, f"/dev/shm has {free / 2**30:.1f} GiB free"


def run(out: Path, budget_s: float, workers: int, work: Path | None = None) -> dict:
    """The GPU run: install, then every step of the plan within ``budget_s`` seconds
    (bundles and results staged in ``work``, a new temporary folder by default)."""
    from benchmarks.studies import cuda_wheels
    from edgeft.provenance import now_iso

    deadline = time.monotonic() + budget_s
    record = {"schema": "edgeft.cuda_check/1", "started": now_iso(), "budget_s": budget_s}
    site = ROOT / plan.CARRY / "site"
    record["install"] = cuda_wheels.install(ROOT / plan.CARRY / "wheels", site)
    sys.path[:0] = [str(site), str(ROOT)]
    record["gpu"] = _gpu_facts()
    work = work or Path(tempfile.mkdtemp(prefix="edgeft-cuda-"))
    results = work / "results"
    results.mkdir(parents=True)
    feats = plan.features()
    workers, why = _workers(workers)
    record.update(features=feats, skipped=plan.skipped(feats), steps=[])
    record["workers"] = {"dataloader": workers, "why": why, "cpus": os.cpu_count()}
    env = dict(os.environ, PYTHONPATH=f"{site}:{ROOT}", EDGEFT_OFFLINE="1", HF_HUB_OFFLINE="1")
    env.update(EDGEFT_ASSETS=str(ROOT / plan.CARRY / "assets"), MPLBACKEND="Agg")
    env["TORCH_HOME"] = str(work / "torch_home")  # empty: weights come by path, never fetched
    out.mkdir(parents=True, exist_ok=True)
    for step in plan.build_plan(work, results, feats, workers):
        left = deadline - time.monotonic() - RESERVE_S
        if left < MIN_STEP_S:
            rec = {"name": step.name, "status": "skipped", "reason": "out of time", **step.meta}
        else:
            rec = _run_step(step, env, min(step.timeout_s, left), results)
        record["steps"].append(rec)
        print(f"{rec['name']}: {rec['status']} ({rec.get('seconds', 0)} s)", flush=True)
        _publish(record, results, out)
    return record


def collect(src: Path, results_root: Path = RESULTS) -> Path:
    """File a finished run (``cuda_check.json``, ``summary.md``, ``results.tar.gz`` in
    ``src``) under ``benchmarks/results/cuda_<gpu>/``; returns that folder."""
    import json
    import re

    record = json.loads((src / "cuda_check.json").read_text())
    name = (record.get("gpu") or {}).get("gpu") or "unknown"
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower().replace("nvidia", "")).strip("_")
    dest = results_root / f"cuda_{slug}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("cuda_check.json", "summary.md"):
        shutil.copy2(src / f, dest / f)
    with tarfile.open(src / "results.tar.gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def main(argv=None) -> int:
    """Command line: ``--prepare``, ``--dry-run``, ``--run`` (default) or ``--collect DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--prepare", action="store_true", help="download wheels, copy assets")
    mode.add_argument("--dry-run", action="store_true", help="check the plan (no GPU needed)")
    mode.add_argument("--run", action="store_true", help="the GPU run (the default)")
    mode.add_argument("--collect", type=Path, help="file a finished run's output folder")
    ap.add_argument("--out", type=Path, default=Path("cuda-check-out"))
    ap.add_argument("--carry", type=Path, default=plan.CARRY, help="the folder that travels")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers per fine-tune")
    ap.add_argument(
        "--assets",
        type=Path,
        default=Path(os.environ.get("EDGEFT_ASSETS", ROOT.parent / "shared" / "assets")),
    )
    args = ap.parse_args(argv)
    try:
        if args.prepare:
            prepare(args.assets, args.carry)
        elif args.dry_run:
            work = Path(tempfile.gettempdir()) / "edgeft-cuda"
            for line in dry_run(work, args.out, args.carry):
                print(f"ok  {line}")
        elif args.collect:
            print(f"results filed in {collect(args.collect)}")
        else:
            record = run(args.out, args.budget, args.workers)
            bad = [s["name"] for s in record["steps"] if s["status"] != "ok"]
            print(f"done; not ok: {', '.join(bad) or 'none'}; results in {args.out}")
            return 1 if bad else 0
    except UserError as exc:
        print(f"cuda_check: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
