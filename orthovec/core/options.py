"""Click options shared by several stages, declared once."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, TypeVar

import click
from rich.console import Console

from orthovec.schemas.atlas import ATLAS_ENV, Atlas, resolve_atlas

F = TypeVar("F", bound=Callable[..., Any])


def _to_atlas(ctx: click.Context, param: click.Parameter, value: str | None) -> Atlas:
    return Atlas(resolve_atlas(value))


atlas_option = click.option(
    "--atlas",
    type=click.Path(file_okay=False, path_type=Path),
    callback=_to_atlas,
    help=f"Atlas directory [env {ATLAS_ENV}; default ./orthovec-atlas].",
)


def console(stderr: bool = False) -> Console:
    """The rich console every command prints through.

    Markup and emoji codes are off: what is printed is data (gene symbols such as `[/]`, file
    names, messages quoting them), and rich would otherwise read `[red]RED[/red]` as a colour and
    `[/]` as a crash. Colour is given with `style=`. Piped output gets 160 columns, not rich's 80,
    so tables stay readable in files and logs.
    """
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=None if probe.is_terminal else 160, markup=False, emoji=False)


QDRANT_URL_ENV = "ORTHOVEC_QDRANT_URL"
QDRANT_API_KEY_ENV = "ORTHOVEC_QDRANT_API_KEY"


def qdrant_options(*, required: bool = False, deprecated_api_key: str | None = None) -> Callable[[F], F]:
    """--qdrant-url and --qdrant-api-key, the same on every command that talks to Qdrant.

    The command receives `qdrant_url` and `qdrant_api_key`. `deprecated_api_key` keeps an older
    spelling of the key option (e.g. `load --api-key`) working, marked deprecated in --help.
    """
    url = click.option(
        "--qdrant-url",
        envvar=QDRANT_URL_ENV,
        required=required,
        help=f"Qdrant server URL (or local:PATH for qdrant-client's local mode) [env {QDRANT_URL_ENV}]"
        + ("." if required else "; default: the atlas's embedded store."),
    )
    names = ["--qdrant-api-key", "qdrant_api_key"]
    if deprecated_api_key:
        names.insert(1, deprecated_api_key)
    key = click.option(
        *names,
        envvar=QDRANT_API_KEY_ENV,
        help=f"Qdrant server API key [env {QDRANT_API_KEY_ENV}]"
        + (f"; {deprecated_api_key} is the deprecated spelling." if deprecated_api_key else "."),
    )

    def decorate(command: F) -> F:
        return url(key(command))

    return decorate


#: The output choices of every command that prints results: a table for people, TSV or JSON for programs.
FORMATS = ("table", "tsv", "json")


def output_format(
    *choices: str, deprecated_json: bool = False, formerly: tuple[str, Sequence[str]] | None = None
) -> Callable[[F], F]:
    """--format table|tsv|json, the one output convention of every command that prints results.

    The command receives `fmt` and prints through `emit_rows`. `choices` defaults to all three;
    giving fewer is a gap that `tests/test_output_format.py` reports. `deprecated_json` keeps an
    older `--json` flag working as `--format json`. `formerly=(keyword, values)` keeps an older
    meaning of `--format` working (`import-homology --format biomart` chose the input): those
    values go to the command's `keyword` parameter, with a deprecation warning naming its option.
    """
    offered = choices or FORMATS
    former_keyword, former_values = formerly if formerly is not None else ("", ())
    fmt_option = click.option(
        "--format",
        "fmt",
        type=click.Choice([*offered, *former_values]),
        default=offered[0],
        show_default=True,
        help="Output: table for people; tsv or json for programs."
        + (f" ({'/'.join(former_values)}: deprecated, see --{former_keyword.replace('_', '-')}.)" if formerly else ""),
    )
    json_flag = click.option("--json", "as_json", is_flag=True, help="Deprecated spelling of --format json.")

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            if kwargs.pop("as_json", False):  # silent: scripts written against --json keep clean stderr
                kwargs["fmt"] = "json"
            if kwargs["fmt"] in former_values:
                option = "--" + former_keyword.replace("_", "-")
                given = kwargs.get(former_keyword)
                if given is not None and given != kwargs["fmt"]:
                    raise click.UsageError(f"--format {kwargs['fmt']} and {option} {given} disagree; give {option}.")
                _deprecated(f"--format {kwargs['fmt']}", f"{option} {kwargs['fmt']} (--format now chooses the output)")
                kwargs[former_keyword], kwargs["fmt"] = kwargs["fmt"], offered[0]
            return command(*args, **kwargs)

        decorated = fmt_option(run)
        return json_flag(decorated) if deprecated_json else decorated  # type: ignore[return-value]  # wraps keeps F

    return decorate


def _deprecated(old: str, new: str) -> None:
    from orthovec.core.logs import OrthovecDeprecationWarning

    warnings.warn(f"{old} is deprecated; use {new}.", OrthovecDeprecationWarning, stacklevel=3)


class Duration(float):
    """Seconds that a table prints as a duration (`0.54 s`, `2 min 05 s`); TSV and JSON keep the number."""

    def __str__(self) -> str:
        return format_duration(self)


def format_duration(seconds: float) -> str:
    """A duration as people read it: `0.54 s`, `12.3 s`, `2 min 05 s`, `1 h 02 min`."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def emit_rows(rows: Sequence[Mapping[str, Any]], fmt: str, *, title: str | None = None) -> None:
    """Rows of one kind as a table, TSV or a JSON list: the one printer of every command's results.

    Tables right-align and separate numbers, print `Duration`s as durations and never cut a
    value: columns of paths leave the table and are printed whole below it, one line each, where
    they can be copied. TSV and JSON carry every column as it is (paths as strings, durations in
    seconds). Values are data, never rich markup.
    """
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=2, default=_json_value))
        return
    columns = list(rows[0]) if rows else []
    if fmt == "tsv":
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(_tsv_cell(row[c]) for c in columns))
        return
    from rich.table import Table
    from rich.text import Text

    paths = [c for c in columns if any(isinstance(r[c], PurePath) for r in rows)]
    shown = [c for c in columns if c not in paths]
    table = Table(title=Text(title) if title is not None else None)
    numeric = {c for c in shown if rows and all(isinstance(r[c], int | float) for r in rows)}
    for column in shown:
        table.add_column(Text(column), justify="right" if column in numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(row[c])) for c in shown))
    out = console()
    if shown:
        out.print(table)
    for row in rows:
        label = f" ({_cell(row[shown[0]])})" if shown and len(rows) > 1 else ""
        for column in paths:
            if row[column] is not None:
                out.print(f"{column}{label}: {row[column]}", highlight=False)


def _json_value(value: Any) -> Any:
    return str(value)


def _tsv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Duration):
        return repr(float(value))
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected I/N, for example 0/4") from None
    return i, n


def shard_option(help_text: str) -> Callable[[F], F]:
    """--shard I/N, one array task's share of the work (`index` and `build` agree on what it means)."""
    return click.option("--shard", callback=_parse_shard, metavar="I/N", help=help_text)


class RuleNumber(click.ParamType):
    """A number checked by one shared rule (`orthovec.schemas.parameters.RULES`), as a click type,
    so the command line refuses exactly what the manifest and HTTP refuse (NaN, out of range), and
    a test can find every numeric option of the command tree and the rule that guards it."""

    def __init__(self, rule: str) -> None:
        from orthovec.schemas.parameters import RULES

        self.rule = RULES[rule]
        self.name = "integer" if self.rule.kind is int else "float"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.name.upper()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from orthovec.schemas.errors import Invalid

        given = value  # the error echoes what the user typed (-1e20, not -1e+20)
        if isinstance(value, str):  # click's own parsing and its message for "abc"
            base: click.ParamType = click.INT if self.rule.kind is int else click.FLOAT
            value = base.convert(value, param, ctx)
        try:
            return self.rule.check(value, param=param.name if param else None)
        except Invalid:
            self.fail(f"{given}: expected {self.rule.allowed()}.", param, ctx)


def number_option(*decls: str, rule: str, **kwargs: Any) -> Callable[[F], F]:
    """A numeric option checked by the shared rule `rule` (see `RuleNumber`)."""
    number = RuleNumber(rule)
    what = number.rule.what
    kwargs.setdefault("help", what[:1].upper() + what[1:] + ".")
    return click.option(*decls, type=number, **kwargs)
