"""Click options shared by several stages, declared once."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from orthovec.schemas.atlas import ATLAS_ENV, Atlas, resolve_atlas


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
