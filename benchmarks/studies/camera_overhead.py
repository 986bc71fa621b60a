"""What the camera loop costs on top of pure inference, as a share of frame time.

    python -m benchmarks.studies.camera_overhead BUNDLE [--frames 600] [--sizes 224x224,640x480]
        [--threads 1,2] [--backend onnx-int8] [--repeats 3] [--out benchmarks/results/camera_overhead.json]

For each frame size and thread count, ``repeats`` rounds of:

1. **pure inference**: the same :class:`edgeft.runtime.Classifier` runs its model on one
   preprocessed frame back to back (batch 1, after warm-up) for 1.5 s: ``t_inf``;
2. **camera loop**: :func:`deploy.camera.run_camera` on a video of the bundle's
   validation images at that frame size, every frame processed (file lockstep, JSON lines
   written to a file), measuring the mean frame time ``t_frame``;
3. pure inference again (``t_inf`` is the mean of the two around the camera run, so that
   a round compares like with like while the load of a shared machine drifts).

``overhead = 1 - t_inf / t_frame``: the share of each frame's time the loop spends on
anything but the model (capture, decode, preprocessing, waiting, post, output), including
any slowdown inference suffers from sharing the CPU with the capture thread. The loop's
own figures (``overhead.share`` from its summary, per-stage means) are recorded beside.
The median round's overhead is reported (each round's too); on a shared machine the
numbers are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.studies import RESULTS


def make_video(bundle, size: tuple[int, int], n: int, path: Path, codec: str = "MJPG") -> Path:
    """A video of the bundle's validation images, resized to ``size`` (w, h).

    MJPG by default: what USB cameras deliver, and cheap to decode (about 1 ms for a VGA
    frame here). FFV1 (lossless) costs 7 to 27 ms a frame to decode on this CPU and would
    measure the codec, not the loop.
    """
    import cv2

    from edgeft.preprocess import load_rgb

    paths = [p for p, _ in bundle.split()["valid"]][:n]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 30, size)
    for p in paths:
        img = np.asarray(load_rgb(p).resize(size))
        writer.write(np.ascontiguousarray(img[..., ::-1]))
    writer.release()
    return path


def pure_inference(clf, frame_bgr: np.ndarray, seconds: float = 3.0) -> dict:
    """Mean and median of back-to-back ``clf.probabilities`` on one preprocessed frame."""
    x = clf.prep(frame_bgr, "BGR")[None]
    for _ in range(10):
        clf.probabilities(x)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        clf.probabilities(x)
        times.append(time.perf_counter() - t)
    return {
        "n": len(times),
        "mean_ms": 1e3 * float(np.mean(times)),
        "p50_ms": 1e3 * float(np.median(times)),
    }


def camera_run(
    bundle_path, video: Path, backend: str, threads: int, frames: int, tmp: Path
) -> dict:
    from deploy.camera import CameraOptions, run_camera

    summary = run_camera(
        CameraOptions(
            bundle=bundle_path,
            source=str(video),
            backend=backend,
            threads=threads,
            out=tmp / "lines.jsonl",
            loop=True,
            max_frames=frames,
        ),
        log=lambda _m: None,
    )
    lat = summary["latency_ms"]
    return {
        "frame_time_ms": lat["frame_time"]["mean"],
        "frame_time_p50_ms": lat["frame_time"]["p50"],
        "fps": summary["fps"],
        "dropped": summary["dropped"],
        "loop_share": summary["overhead"]["share"],
        "serial_share": summary["overhead"]["serial_share"],
        "stage_mean_ms": {k: v["mean"] for k, v in lat.items() if k not in ("frame_time", "age")},
    }


def run(
    bundle_path, sizes, threads_list, frames: int, repeats: int, backend: str, note: str = ""
) -> dict:
    """Measure every (size, threads) configuration; returns the report dict."""
    import cv2

    from edgeft.bundle import Bundle
    from edgeft.provenance import now_iso

    bundle = Bundle.load(bundle_path)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for size in sizes:
            video = make_video(bundle, size, 100, tmp / f"clip_{size[0]}x{size[1]}.avi")
            frame = cv2.VideoCapture(str(video)).read()[1]
            for threads in threads_list:
                rows.append(
                    _measure(
                        bundle,
                        bundle_path,
                        video,
                        frame,
                        size,
                        threads,
                        frames,
                        repeats,
                        backend,
                        tmp,
                    )
                )
    pp = bundle.preprocessing
    return {
        "benchmark": "camera_overhead",
        "created": now_iso(),
        "bundle": str(bundle.path),
        "arch": bundle.arch,
        "input_size": list(pp.size),
        "frames_per_run": frames,
        "goal": "overhead_share < 0.15 at 224 px input",
        "machine": _machine(),
        "note": note,
        "rows": rows,
    }


def _measure(
    bundle, bundle_path, video, frame, size, threads, frames, repeats, backend, tmp
) -> dict:
    """One configuration: ``repeats`` rounds of pure inference, camera loop, pure inference
    (back to back, so that each round's overhead compares like with like on a machine whose
    load drifts); the median round is reported."""
    from edgeft.runtime import Classifier

    pures, cams, shares, mean_shares = [], [], [], []
    for _ in range(repeats):
        with Classifier.load(bundle, backend=backend, threads=threads) as clf:
            before = pure_inference(clf, frame, seconds=1.5)
            used = clf.describe()
        cam = camera_run(bundle_path, video, backend, threads, frames, tmp)
        with Classifier.load(bundle, backend=backend, threads=threads) as clf:
            after = pure_inference(clf, frame, seconds=1.5)
        pures += [before, after]
        cams.append(cam)
        t_inf = (before["p50_ms"] + after["p50_ms"]) / 2
        shares.append(1 - t_inf / cam["frame_time_p50_ms"])
        t_inf = (before["mean_ms"] + after["mean_ms"]) / 2
        mean_shares.append(1 - t_inf / cam["frame_time_ms"])
    t_inf = statistics.median(p["p50_ms"] for p in pures)
    t_frame = statistics.median(c["frame_time_p50_ms"] for c in cams)
    return {
        "frame_size": f"{size[0]}x{size[1]}",
        "threads": threads,
        "backend": used,
        "pure_inference_p50_ms": round(t_inf, 3),
        "frame_time_p50_ms": round(t_frame, 3),
        "overhead_share": round(statistics.median(shares), 4),
        "overhead_share_rounds": [round(x, 4) for x in shares],
        "overhead_share_mean": round(statistics.median(mean_shares), 4),
        "overhead_share_mean_rounds": [round(x, 4) for x in mean_shares],
        "loop_reported_share": statistics.median(c["loop_share"] for c in cams),
        "serial_share": statistics.median(c["serial_share"] for c in cams),
        "fps": statistics.median(c["fps"] for c in cams),
        "stage_mean_ms": cams[len(cams) // 2]["stage_mean_ms"],
        "repeats": {"pure": pures, "camera": cams},
    }


def _machine() -> dict:
    import os
    import platform

    from edgeft.platform.cpu import describe_cpu

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    busy = load is not None and load[0] > 0.75 * (os.cpu_count() or 1) + 1
    return {
        "cpu": describe_cpu(),
        "arch": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_at_start": load,
        # the study itself keeps about one core busy; more than that is someone else's work
        "note": "busy machine: timings are noisy; rerun on a quiet one" if busy else "quiet",
    }


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--frames", type=int, default=600, help="frames per camera run")
    ap.add_argument("--sizes", default="224x224,640x480", help="frame sizes WxH, comma-separated")
    ap.add_argument("--threads", default="1,2", help="inference threads to try, comma-separated")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--backend", default="onnx-int8")
    ap.add_argument("--out", type=Path, default=RESULTS / "camera_overhead.json")
    ap.add_argument("--note", default="", help="context to record (which bundle, machine state)")
    a = ap.parse_args(argv)
    load_start = os.getloadavg()
    report = run(
        a.bundle,
        _sizes(a.sizes),
        [int(t) for t in a.threads.split(",")],
        a.frames,
        a.repeats,
        a.backend,
        a.note,
    )
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["machine"]["loadavg_at_start"] = load_start
    from edgeft.atomic import write_json_atomic

    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out, report)
    for r in report["rows"]:
        print(
            f"{r['frame_size']:>9} threads={r['threads']}: inference {r['pure_inference_p50_ms']:.2f} ms, frame "
            f"{r['frame_time_p50_ms']:.2f} ms ({r['fps']:.0f} fps): overhead {100 * r['overhead_share']:.1f}% "
            f"(from means {100 * r['overhead_share_mean']:.1f}%) "
            f"(loop says {100 * r['loop_reported_share']:.1f}%, serial would be {100 * r['serial_share']:.1f}%)"
        )
    print(f"wrote {a.out}")
    return report


if __name__ == "__main__":
    main()
