"""Options declared once: a dataclass field carries its command-line flag and help.

Each command's options object (``FinetuneOptions``, ``ExportOptions``, ``BenchOptions``,
...) declares every option exactly once, as a field made with :func:`opt`. The CLI
(:mod:`edgeft.cli.build`) derives the typer command from those fields, the library
receives the object, and ``bench --remote`` sends it as JSON (:func:`to_json` /
:func:`from_json`) instead of rebuilding a command line. The library never imports typer.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeft.errors import UserError


@dataclass(frozen=True)
class Cli:
    """How a field appears on the command line.

    Attributes:
        help: the ``--help`` text.
        flags: the option's flags; default ``--field-name`` (bools: ``--x/--no-x`` unless
            a single flag is given).
        parse: turns the command-line text into the field's value (for lists and sizes).
        argument: a positional argument instead of an option.
        hidden: not shown in ``--help`` (tests, remote runs).
        repeat: the option may be given several times (a list of texts for ``parse``).
    """

    help: str
    flags: tuple[str, ...] = ()
    parse: Callable[[Any], Any] | None = None
    argument: bool = False
    hidden: bool = False
    repeat: bool = False


def opt(default: Any = dataclasses.MISSING, help: str = "", *flags: str, **cli) -> Any:
    """A dataclass field with its command-line declaration (see :class:`Cli`).

    ``default`` may be ``dataclasses.MISSING`` (required), a value, or a zero-argument
    callable wrapped as ``opt(factory=list)``-style via ``cli["factory"]``.
    """
    factory = cli.pop("factory", None)
    meta = {"cli": Cli(help, tuple(flags), **cli)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def cli_fields(cls) -> list[tuple[dataclasses.Field, Cli, Any]]:
    """``(field, Cli, resolved type)`` for every command-line field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return [
        (f, f.metadata["cli"], hints[f.name])
        for f in dataclasses.fields(cls)
        if "cli" in f.metadata
    ]


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def to_json(opts, exclude: tuple[str, ...] = ()) -> str:
    """An options object as JSON (paths as text), for another edgeft to read back."""
    data = {
        f.name: _jsonable(getattr(opts, f.name))
        for f in dataclasses.fields(opts)
        if f.name not in exclude
    }
    return json.dumps(data, default=_jsonable)


def from_json(cls, text: str, **override):
    """The options object of class ``cls`` from :func:`to_json` text (unknown keys refused).

    Raises:
        UserError: not JSON, or a key ``cls`` does not have.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"options are not valid JSON: {exc}") from None
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r}: this edgeft is older than the sender")
    for name, value in data.items():
        hint = hints[name]
        if value is not None and (hint is Path or Path in typing.get_args(hint)):
            data[name] = Path(value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            data[name] = tuple(value)
    data.update(override)
    return cls(**data)


def parse_int_list(text, what: str = "--batch-sizes") -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; one line naming the bad item otherwise."""
    if isinstance(text, tuple):
        return text
    items = [t for t in str(text).replace(" ", ",").split(",") if t]
    try:
        return tuple(int(t) for t in items)
    except ValueError:
        raise UserError(
            f"{what} takes comma-separated integers, e.g. 1,8,32, not {text!r}"
        ) from None


def parse_list(text) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (order and repeats kept, for the caller to judge)."""
    if isinstance(text, list):
        return text
    return [t.strip() for t in str(text).split(",") if t.strip()]


def parse_name_list(values) -> list[str] | None:
    """Names given comma-separated and/or repeated; None when none given."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    return list(dict.fromkeys(names)) or None


def parse_size(text) -> tuple[int, int]:
    """``"224"`` or ``"224x192"`` (height x width) -> ``(h, w)``."""
    if isinstance(text, tuple):
        return text
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts if p.strip()]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals *= 2
    if len(vals) != 2 or min(vals) < 1:
        raise UserError(f"--size must be N or HxW with positive integers, not {text!r}")
    return vals[0], vals[1]


def same_as(cls, name: str, default: Any = dataclasses.MISSING, **cli) -> Any:
    """Field ``name`` of options class ``cls``, reused by another command's options (one
    declaration; ``default`` and the :class:`Cli` attributes may be overridden)."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    meta = {"cli": dataclasses.replace(f.metadata["cli"], **cli)}
    if default is not dataclasses.MISSING:
        return dataclasses.field(default=default, metadata=meta)
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=meta)
    return dataclasses.field(default=f.default, metadata=meta)
