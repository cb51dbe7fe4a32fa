"""Click options shared by several stages, declared once."""

from __future__ import annotations

from collections.abc import Callable
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
