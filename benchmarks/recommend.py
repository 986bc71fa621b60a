"""Which form to ship, from the measurements: the answer to "is INT8 worth it here?".

For each batch size the bench timed, the recommendation is the fastest backend (median
model-only latency) among those whose parity ladder rung passed; where several are within
:data:`NEAR_TIE` of the fastest, the most accurate of them (smallest accuracy drop, then
highest agreement), since a user gives up a few percent of latency for half a point of
accuracy. It is set against the FP32 baseline (ONNX Runtime FP32 where it ran, else PyTorch
FP32): its throughput gain, its accuracy drop and top-1 agreement, and which file and
engine to ship. Every other backend
gets the reason it lost: slower (by how much), outside tolerance (which), or it did not run.
"""

from __future__ import annotations

from edgeft import formats

BASELINES = ("onnx", "torch")
#: forms at most this much slower than the fastest count as equally fast
NEAR_TIE = 1.10


def _pick(ok: list[str], entries: dict, rows: dict) -> str:
    fastest = min(entries[n]["model"]["p50_ms"] for n in ok)
    tied = [n for n in ok if entries[n]["model"]["p50_ms"] <= fastest * NEAR_TIE]
    return min(
        tied,
        key=lambda n: (
            rows[n]["figures"]["accuracy_drop_pp"],
            -rows[n]["figures"]["agreement"],
            entries[n]["model"]["p50_ms"],
        ),
    )


def _why_not(name: str, row: dict | None, entry: dict | None, best_ms: float) -> str:
    if row is None or entry is None:
        return "did not run"
    if not row["passed"]:
        return "outside tolerance: " + "; ".join(row["breaches"])
    ms = entry["model"]["p50_ms"]
    if ms < best_ms:
        return (
            f"as fast ({ms:.3g} ms) but less accurate: {row['figures']['accuracy_drop_pp']:+.2f} pp"
        )
    return f"slower: {ms:.3g} ms, {ms / best_ms:.2f}x the best's latency"


def _ship(name: str) -> str:
    if name not in formats.FORMATS:  # a backend named in another edgeft's report
        return name
    fmt = formats.get(name)
    # a runtime mode (openvino-bf16) ships the file of the artifact it runs
    source = formats.get(fmt.artifact) if fmt.artifact else fmt
    what = source.file or "the bundle's weights"
    return f"{what} with {fmt.engine}"


def recommend(report: dict) -> list[dict]:
    """One recommendation per timed batch size (see the module docstring)."""
    rows = {r["backend"]: r for r in report["ladder"]["rows"]}
    out = []
    for bs in sorted({e["batch_size"] for e in report["latency"]}):
        entries = {e["backend"]: e for e in report["latency"] if e["batch_size"] == bs}
        ok = [n for n, e in entries.items() if rows.get(n, {}).get("passed")]
        if not ok:
            out.append(
                {"batch_size": bs, "best": None, "sentence": "no backend passed its parity check"}
            )
            continue
        best = _pick(ok, entries, rows)
        base = next((b for b in BASELINES if b in entries and rows.get(b, {}).get("passed")), best)
        gain = entries[base]["model"]["p50_ms"] / entries[best]["model"]["p50_ms"]
        fig = rows[best]["figures"]
        sentence = (
            f"{best}: {gain:.2f}x the throughput of {base} at {-fig['accuracy_drop_pp']:+.2f} pp, "
            f"agreement {100 * fig['agreement']:.1f}%: ship {_ship(best)}"
            if best != base
            else f"{best}: the FP32 baseline is the fastest form within tolerance here: ship {_ship(best)}"
        )
        best_ms = entries[best]["model"]["p50_ms"]
        others = {
            n: _why_not(n, rows.get(n), entries.get(n), best_ms)
            for n in [*rows, *entries]
            if n != best
        }
        out.append(
            {
                "batch_size": bs,
                "device": report["environment"]["device"],
                "best": best,
                "baseline": base,
                "speedup_vs_baseline": gain,
                "accuracy_drop_pp": fig["accuracy_drop_pp"],
                "agreement": fig["agreement"],
                "ship": _ship(best),
                "sentence": sentence,
                "others": others,
            }
        )
    return out
