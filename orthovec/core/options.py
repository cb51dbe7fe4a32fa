"""Click options shared by several stages, declared once."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
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
    """Rich console that keeps tables readable when output is piped (rich assumes 80 columns)."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=None if probe.is_terminal else 160)


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


def output_format(*choices: str, deprecated_json: bool = False) -> Callable[[F], F]:
    """--format CHOICE, the one output convention of every command: `table` for people (the
    default), `tsv` or `json` for programs. The command receives `fmt`.

    `deprecated_json` keeps an older `--json` flag working as `--format json`, marked deprecated.
    """
    fmt_option = click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output: table for people; tsv or json for programs.",
    )
    if not deprecated_json:
        return fmt_option
    json_flag = click.option("--json", "as_json", is_flag=True, help="Deprecated spelling of --format json.")

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, as_json: bool, **kwargs: Any) -> Any:
            if as_json:
                kwargs["fmt"] = "json"
            return command(*args, **kwargs)

        return fmt_option(json_flag(run))  # type: ignore[return-value]  # wraps keeps the signature F

    return decorate


def emit_rows(rows: Sequence[Mapping[str, Any]], fmt: str, *, title: str | None = None) -> None:
    """Rows of one kind as a table (numbers right-aligned, thousands separated), TSV or a JSON list."""
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    columns = list(rows[0]) if rows else []
    if fmt == "tsv":
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join("" if row[c] is None else str(row[c]) for c in columns))
        return
    from rich.table import Table

    table = Table(title=title)
    numeric = {c for c in columns if rows and all(isinstance(r[c], int | float) for r in rows)}
    for column in columns:
        table.add_column(column, justify="right" if column in numeric else "left")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
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


def number_option(*decls: str, rule: str, **kwargs: Any) -> Callable[[F], F]:
    """A numeric option checked by the shared rule `rule` (`orthovec.schemas.parameters.RULES`),
    so the command line refuses exactly what the manifest and HTTP refuse (NaN, out of range)."""
    from orthovec.schemas.errors import Invalid
    from orthovec.schemas.parameters import RULES

    number = RULES[rule]

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return number.check(value, param=param.name)
        except Invalid as err:
            raise click.BadParameter(f"{value}: expected {number.allowed()}.") from err

    kwargs.setdefault("help", number.what[:1].upper() + number.what[1:] + ".")
    return click.option(*decls, type=float if number.kind is float else int, callback=check, **kwargs)
