"""Terminal output: one rich console, tables, and progress bars that ``--quiet`` silences."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.table import Table

_console = Console(highlight=False)


def console() -> Console:
    return _console


def set_quiet(quiet: bool) -> None:
    _console.quiet = quiet


@contextlib.contextmanager
def quiet_if(quiet: bool):
    """Silence the console inside the block when ``quiet`` (restoring it afterwards)."""
    before = _console.quiet
    _console.quiet = before or quiet
    try:
        yield
    finally:
        _console.quiet = before


def table(title: str, columns: list[str], rows: list[list], justify_numbers: bool = True) -> Table:
    """A rich table; numeric cells are right-aligned."""
    t = Table(title=title, title_justify="left", show_lines=False)
    for i, c in enumerate(columns):
        numeric = (
            justify_numbers
            and rows
            and all(isinstance(r[i], (int, float)) or r[i] in ("", "-", None) for r in rows)
        )
        t.add_column(c, justify="right" if numeric and i else "left")
    for r in rows:
        t.add_row(*["-" if v is None else fmt(v) for v in r])
    return t


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


@contextlib.contextmanager
def progress(description: str, total: int | None):
    """A progress bar (a no-op when quiet); yields ``advance(n=1)``."""
    if _console.quiet:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)
