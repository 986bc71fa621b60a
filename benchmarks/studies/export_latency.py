"""Batch-1 CPU latency of a bundle's PyTorch model and its ONNX Runtime FP32 / INT8 exports,
with the validation accuracy of each, in one process.

    python -m benchmarks.studies.export_latency --bundle BUNDLE [--runs 300 --warmup 50 --rounds 3]

The bundle needs the ``onnx`` and ``onnx-int8`` artifacts (``edgeft export B`` and
``edgeft export B --int8``). Every backend runs with one thread (``torch.set_num_threads(1)``,
ONNX Runtime ``intra_op_num_threads=1``) on the same preprocessed validation image. The
backends take turns in ``rounds`` so that a change in machine load hits all of them; the
figure reported is the median over every timed call after the warm-up. Machine facts (CPU,
int8 instructions, load average before and after) go into the JSON next to the numbers:
on a shared machine the timings are noisy and the load says how noisy.

Writes ``benchmarks/results/export_latency.json`` and ``.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.studies import RESULTS

BACKENDS = ("torch", "onnx", "onnx-int8")


def _time(fn, n: int) -> list[float]:
    """``n`` timed calls, through bench's own timing routine (the same clock and GC policy)."""
    from benchmarks.latency import time_calls

    return time_calls(fn, warmup=0, runs=n)


def machine() -> dict:
    """CPU model, cores, int8 instructions, load average, library versions."""
    from edgeft.provenance import package_version
    from exporters.ort_int8 import cpu_int8_info

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "int8": cpu_int8_info(),
        "python": platform.python_version(),
        "versions": {p: package_version(p) for p in ("torch", "onnxruntime", "onnx", "numpy")},
    }


def kernel_probe(threads: int = 1, runs: int = 300) -> dict:
    """INT8 over FP32 speed of one 1x1 convolution (96 -> 576 channels, 16x16, ReLU6) in ONNX
    Runtime: the ceiling this CPU's int8 kernels put on a whole network's speed-up."""
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from exporters.ort_int8 import calibrate, cpu_int8_info, quantize

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(
        (rng.standard_normal((576, 96, 1, 1)) * 0.1).astype(np.float32), "w"
    )
    lo, hi = (
        numpy_helper.from_array(np.float32(0), "lo"),
        numpy_helper.from_array(np.float32(6), "hi"),
    )
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
            helper.make_node("Clip", ["c", "lo", "hi"], ["out"], name="clip"),
        ],
        "probe",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 96, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 576, 16, 16])],
        [w, lo, hi],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.random((8, 96, 16, 16), dtype=np.float32)
    med = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, fp32)
        quantize(
            fp32, int8, calibrate(fp32, x, "minmax"), "ort-cpu", cpu_int8_info()["reduce_range"]
        )
        for name, path in (("fp32", fp32), ("int8", int8)):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            feed = {"input": x[:1]}
            _time(lambda s=sess, f=feed: s.run(None, f), 50)
            med[name] = float(np.median(_time(lambda s=sess, f=feed: s.run(None, f), runs)))
    return {
        "conv": "1x1, 96->576 channels, 16x16, ReLU6",
        "fp32_ms": med["fp32"],
        "int8_ms": med["int8"],
        "int8_speedup": med["fp32"] / med["int8"],
    }


def _time_rounds(runners: dict, x1, rounds: int, warmup: int, runs: int) -> dict[str, list[float]]:
    """Backends take turns, round after round, so load changes hit all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, r in runners.items():
            _time(lambda r=r: r.infer(x1), warmup)
            samples[name] += _time(lambda r=r: r.infer(x1), runs)
    return samples


def _rows(samples, outputs, valid, labels) -> dict:
    from edgeft.parity import compare

    rows = {}
    for name, times in samples.items():
        s = np.asarray(times)
        fig = compare(outputs["torch"], outputs[name], valid.targets, labels)
        rows[name] = {
            "median_ms": float(np.median(s)),
            "p10_ms": float(np.percentile(s, 10)),
            "p90_ms": float(np.percentile(s, 90)),
            "timed_calls": int(s.size),
            "accuracy": fig["accuracy"],
            "accuracy_drop_pp": fig["accuracy_drop_pp"],
            "agreement": fig["agreement"],
        }
    return rows


def run(bundle_path, runs: int = 300, warmup: int = 50, rounds: int = 3, threads: int = 1) -> dict:
    """Measure (see the module docstring); returns the result dict."""
    import torch

    from edgeft import formats
    from edgeft.bundle import Bundle
    from edgeft.labelled import load_labelled
    from edgeft.parity import bundle_valid_samples, run_batches
    from exporters.ort_int8 import ort_graph_summary

    torch.set_num_threads(threads)
    bundle = Bundle.load(bundle_path)
    int8_file = bundle.artifact_path("onnx-int8")  # one clear line if an artifact is missing
    valid = load_labelled(bundle_valid_samples(bundle), bundle.labels, bundle.preprocessing)
    load_before = os.getloadavg()
    runners = {name: formats.make_runner(name, bundle, threads=threads) for name in BACKENDS}
    for r in runners.values():
        r.activate()
    outputs = {name: run_batches(r, valid, 32, bundle.preprocessing) for name, r in runners.items()}
    samples = _time_rounds(runners, valid.head(1), rounds, warmup, runs)
    probe = kernel_probe(threads)
    load_after = os.getloadavg()
    for r in runners.values():
        r.deactivate()
    rows = _rows(samples, outputs, valid, bundle.labels)
    fp32, int8 = rows["onnx"]["median_ms"], rows["onnx-int8"]["median_ms"]
    build = bundle.artifact("onnx-int8").build
    return {
        "bundle": str(bundle.path),
        "arch": bundle.arch,
        "input": list(bundle.preprocessing.size),
        "validation_images": int(len(valid.targets)),
        "batch": 1,
        "threads": threads,
        "runs_per_round": runs,
        "warmup_per_round": warmup,
        "rounds": rounds,
        "results": rows,
        "speedup": {
            "ort_fp32_over_torch": rows["torch"]["median_ms"] / fp32,
            "ort_int8_over_ort_fp32": fp32 / int8,
        },
        "int8": {
            "float_nodes": build.get("float_nodes"),
            "calibration": build.get("calibration", {}).get("method"),
            "reduce_range": build.get("reduce_range"),
            "optimized_graph": ort_graph_summary(int8_file, threads),
        },
        "kernel_probe": probe,
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown(res: dict) -> str:
    """A short Markdown table of :func:`run`'s result."""
    lines = [
        f"# Export latency: {res['arch']} {res['input'][0]}x{res['input'][1]}, batch 1, {res['threads']} thread",
        "",
        "| backend | median ms | p10-p90 ms | accuracy | drop (pp) | agreement |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["results"].items():
        lines.append(
            f"| {name} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}-{r['p90_ms']:.2f} | "
            f"{100 * r['accuracy']:.2f}% | {r['accuracy_drop_pp']:+.2f} | {100 * r['agreement']:.2f}% |"
        )
    s, g, m = res["speedup"], res["int8"]["optimized_graph"], res["machine"]
    lines += [
        "",
        f"ORT FP32 vs PyTorch eager: {s['ort_fp32_over_torch']:.2f}x; ORT INT8 vs ORT FP32: {s['ort_int8_over_ort_fp32']:.2f}x.",
        f"INT8 graph after ONNX Runtime's optimisation: {g['qlinear_conv']} QLinearConv, {g['float_conv']} float Conv, "
        f"{g['transposes']} Transpose; layers kept in float: {', '.join(res['int8']['float_nodes'] or []) or 'none'}.",
        f"Kernel probe ({res['kernel_probe']['conv']}): INT8 {res['kernel_probe']['int8_speedup']:.2f}x "
        "faster than FP32 -- the ceiling this CPU's int8 kernels set for the whole network.",
        f"{res['validation_images']} validation images; {res['rounds']} rounds x {res['runs_per_round']} timed calls "
        f"per backend after {res['warmup_per_round']} warm-up calls each.",
        f"Machine: {m['cpu']} ({m['cores']} cores, {m['int8']['isa']}), load average before/after "
        f"{m['loadavg_before'][0]:.2f}/{m['loadavg_after'][0]:.2f}; {m['versions']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "export_latency.json")
    a = p.parse_args(argv)
    from edgeft.errors import UserError

    try:
        res = run(a.bundle, a.runs, a.warmup, a.rounds, a.threads)
    except UserError as exc:
        raise SystemExit(f"export_latency: error: {exc}") from None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    a.out.with_suffix(".md").write_text(md)
    print(md, end="")


if __name__ == "__main__":
    main()
