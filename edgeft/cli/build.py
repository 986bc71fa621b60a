"""Typer commands derived from options dataclasses (:mod:`edgeft.options`).

Each option is declared once, as a field of the command's options object; this module
turns those fields into typer parameters (flag, type, default, help) and the parsed
command line back into the options object, which goes to one library function.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeft.options import cli_fields

_UNSET = object()


def _base_type(hint):
    """``(type, optional)`` of a field's type hint (``int | None`` -> ``(int, True)``)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return hint, False


def _flags(field, cli, base) -> tuple[str, ...]:
    if cli.flags:
        return cli.flags
    flag = "--" + field.name.replace("_", "-")
    if base is bool and field.default is True:
        return (f"{flag}/--no-{field.name.replace('_', '-')}",)
    return (flag,)


def _parameter(field, cli, hint) -> inspect.Parameter:
    base, optional = _base_type(hint)
    has_default = field.default is not dataclasses.MISSING or (
        field.default_factory is not dataclasses.MISSING
    )
    if cli.parse is not None:  # text on the command line, parsed into the field's type
        cli_type = list[str] | None if cli.repeat else str | None
        default = None
    else:
        if cli.repeat:
            cli_type = list[str] | None
        elif optional and base in (bool, int, float, str, Path):
            cli_type = base | None
        else:
            cli_type = hint  # typer handles bool/int/float/str/Path, lists and fixed tuples
        default = field.default if field.default is not dataclasses.MISSING else None
    kind = typer.Argument if cli.argument else typer.Option
    info = (
        kind(help=cli.help, hidden=cli.hidden, show_default=default not in (None, False))
        if cli.argument
        else kind(
            *_flags(field, cli, base),
            help=cli.help,
            hidden=cli.hidden,
            show_default=default not in (None, False, ()),
        )
    )
    annotation = Annotated[cli_type, info]
    if not has_default:
        return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def options_from(cls, kwargs: dict[str, Any]):
    """The options object of class ``cls`` from a parsed command line (``kwargs`` by field
    name, as click hands them to the command): parse functions applied, options left unset
    at the dataclass defaults."""
    values = {}
    for f, c, _ in cli_fields(cls):
        value = kwargs.get(f.name, _UNSET)
        if value is _UNSET or (c.parse is not None and value is None):
            continue  # the dataclass default
        if c.parse is not None:
            value = c.parse(value)
        elif c.repeat and value is None:
            continue
        values[f.name] = value
    return cls(**values)


def add_command(
    app: typer.Typer, name: str, cls, run: Callable[[Any], Any], help: str, **settings
) -> Callable:
    """Add command ``name`` to ``app``: its options are ``cls``'s command-line fields, and
    ``run(cls(...))`` is called with the parsed command line."""
    fields = cli_fields(cls)
    params = [_parameter(f, c, h) for f, c, h in fields]
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)  # required first

    def command(**kwargs):
        return run(options_from(cls, kwargs))

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name.replace("-", "_")
    command.__doc__ = help
    app.command(name, **settings)(command)
    return command
