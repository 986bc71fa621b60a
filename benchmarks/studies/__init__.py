"""Benchmark studies: standalone scripts (``python -m benchmarks.studies.NAME``) whose
results are recorded in ``benchmarks/results/``. They sit on top of the library, like the
CLI: they may import ``edgeft``, ``exporters``, ``benchmarks`` and ``deploy``; nothing imports them."""

from pathlib import Path

#: The repository root and the folder the studies write their recorded results into.
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
