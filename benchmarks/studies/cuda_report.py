"""The CUDA check's figures: what each fine-tune and bench step produced, the speed-ups the
issue asks for, and the summary (Markdown) written next to the run's JSON.

Training speed is images per second over the fine-tune's epochs: ``images_per_s`` over the
whole training (``n_train x epochs / train_seconds``, validation passes and the first
epoch's warm-up included) and ``steady_images_per_s`` over its fastest epoch (what the
speed-ups compare: the precision's own speed, not one-off start-up costs).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

MIB = 2**20


def finetune_figures(bundle: Path) -> dict:
    """Wall time, speed and accuracy of a fine-tune, read from its bundle.json."""
    m = json.loads((Path(bundle) / "bundle.json").read_text())
    tr = m["training"]
    n_train = tr["data"]["n_train"]
    epochs = [h for h in tr.get("history", []) if h.get("seconds")]
    fastest = min((h["seconds"] for h in epochs), default=None)
    return {
        "accuracy": m["metrics"]["valid"]["accuracy"],
        "precision": tr.get("precision", "fp32"),
        "device": tr.get("device"),
        "epochs": len(epochs),
        "n_train": n_train,
        "n_valid": tr["data"]["n_valid"],
        "batch_size": tr.get("batch_size"),
        "train_seconds": tr["train_seconds"],
        "wall_seconds": tr["wall_seconds"],
        "images_per_s": n_train * len(epochs) / tr["train_seconds"] if epochs else None,
        "steady_images_per_s": n_train / fastest if fastest else None,
        "distributed": tr.get("distributed"),
        "epoch_seconds": [round(h["seconds"], 3) for h in epochs],
    }


def bench_figures(report_path: Path) -> dict:
    """Latency, throughput, peak GPU memory and the parity ladder from a bench report."""
    r = json.loads(Path(report_path).read_text())
    latency = []
    for e in r["latency"]:
        m, mem = e["model"], (e.get("gpu_memory") or {}).get("model") or {}
        latency.append(
            {
                "backend": e["backend"],
                "batch_size": e["batch_size"],
                "p50_ms": m["p50_ms"],
                "throughput_ips": m["throughput_ips"],
                "timer": m.get("timer", "perf_counter"),
                "peak_allocated_mib": mem.get("peak_allocated_bytes", 0) / MIB or None,
                "working_mib": mem.get("working_bytes", 0) / MIB or None,
                "e2e_p50_ms": (e.get("e2e") or {}).get("p50_ms"),
            }
        )
    ladder = [
        {
            "backend": row["backend"],
            "precision": row["precision"],
            **{k: row["figures"].get(k) for k in ("accuracy", "agreement", "max_abs_diff")},
            "breaches": row.get("breaches"),
        }
        for row in r["ladder"]["rows"]
    ]
    return {
        "latency": latency,
        "ladder": ladder,
        "verdict": r["verdict"],
        "gpu": r["environment"].get("gpu"),
    }


def pytest_figures(junit: Path) -> dict:
    """Counts from pytest's JUnit XML, and the names of tests that failed."""
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failed = [
        f"{c.get('classname')}.{c.get('name')}"
        for c in suite.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    keys = ("tests", "failures", "errors", "skipped")
    return {**{k: int(suite.get(k, 0)) for k in keys}, "failed": failed}


def speedups(steps: list[dict]) -> dict:
    """The issue's ratios: fp16/bf16 training speed and accuracy against fp32 per arch, and
    torch-fp16 / torch-cl inference throughput against torch FP32 at each batch size."""
    train = {}
    fig = {
        (s["arch"], s["precision"]): s["figures"]
        for s in steps
        if s.get("kind") == "finetune" and s.get("figures")
    }
    for (arch, precision), f in fig.items():
        base = fig.get((arch, "fp32"))
        if (
            precision != "fp32"
            and base
            and f["steady_images_per_s"]
            and base["steady_images_per_s"]
        ):
            train[f"{arch} {precision}"] = {
                "speedup": f["steady_images_per_s"] / base["steady_images_per_s"],
                "accuracy_pp_vs_fp32": 100 * (f["accuracy"] - base["accuracy"]),
            }
    infer = {}
    for s in steps:
        if s.get("kind") != "bench" or not s.get("figures"):
            continue
        rows = {(e["backend"], e["batch_size"]): e for e in s["figures"]["latency"]}
        for (backend, bs), e in rows.items():
            base = rows.get(("torch", bs))
            if backend != "torch" and base:
                infer[f"{s['arch']} {backend} b{bs}"] = e["throughput_ips"] / base["throughput_ips"]
    return {"training": train, "inference": infer}


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def summary_md(record: dict) -> str:
    """The run's summary: steps, training, inference, parity, tests, speed-ups."""
    gpu = record.get("gpu") or {}
    lines = [
        f"# CUDA check: {gpu.get('gpu', 'no GPU')}",
        "",
        f"torch {gpu.get('torch', '-')}, CUDA {gpu.get('cuda', '-')}, driver {gpu.get('driver', '-')}; "
        f"started {record.get('started')}; budget {record.get('budget_s')} s.",
        "",
        "| step | status | seconds | note |",
        "|---|---|---:|---|",
    ]
    for s in record["steps"]:
        note = s.get("reason") or s.get("last_line") or ""
        lines.append(f"| {s['name']} | {s['status']} | {_fmt(s.get('seconds'))} | {note[:120]} |")
    lines += ["", "| arch | precision | accuracy % | steady img/s | img/s | train s | wall s |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for s in record["steps"]:
        f = s.get("figures") if s.get("kind") == "finetune" else None
        if f:
            lines.append(
                f"| {s['arch']} | {s['precision']} | {100 * f['accuracy']:.2f} | "
                f"{_fmt(f['steady_images_per_s'], '.0f')} | {_fmt(f['images_per_s'], '.0f')} | "
                f"{f['train_seconds']:.1f} | {f['wall_seconds']:.1f} |"
            )
    lines += [
        "",
        "| arch | backend | batch | p50 ms | img/s | peak MiB | working MiB | agreement |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in record["steps"]:
        f = s.get("figures") if s.get("kind") == "bench" else None
        if not f:
            continue
        agree = {row["backend"]: row["agreement"] for row in f["ladder"]}
        for e in f["latency"]:
            lines.append(
                f"| {s['arch']} | {e['backend']} | {e['batch_size']} | {e['p50_ms']:.3f} | "
                f"{e['throughput_ips']:.0f} | {_fmt(e['peak_allocated_mib'])} | "
                f"{_fmt(e['working_mib'])} | {_fmt(agree.get(e['backend']), '.4f')} |"
            )
    sp = record.get("speedups") or {}
    lines += ["", "Speed-ups over fp32 (training: steady img/s; inference: img/s):", ""]
    lines += [
        f"- training {k}: {v['speedup']:.2f}x, accuracy {v['accuracy_pp_vs_fp32']:+.2f} pp"
        for k, v in sp.get("training", {}).items()
    ]
    lines += [f"- inference {k}: {v:.2f}x" for k, v in sp.get("inference", {}).items()]
    for what, why in (record.get("skipped") or {}).items():
        lines.append(f"- not run: {what} ({why})")
    return "\n".join(lines) + "\n"
