"""Bench reports a person can read: terminal tables, report.json, report.md, PNGs, and
``--compare`` of two reports side by side.

``report.json`` carries ``"schema": "edgeft.bench/1"``; a reader refuses other schemas
and newer versions with one line. Every file of a report is written into a temporary
sibling folder that replaces ``--out`` only when complete.
"""

from benchmarks.report.files import (
    SCHEMA_ID,
    load_report,
    raise_on_verdict,
    write_bench_reports,
    write_reports,
)
from benchmarks.report.terminal import print_report

__all__ = [
    "SCHEMA_ID",
    "load_report",
    "print_report",
    "raise_on_verdict",
    "write_bench_reports",
    "write_reports",
]
