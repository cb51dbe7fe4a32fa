"""The `orthovec` command: one group composed from each stage's `cli.COMMANDS`."""

from __future__ import annotations

import sys
from typing import Any

import click

from orthovec import __version__
from orthovec.schemas.errors import UserError


class _Group(click.Group):
    """Turns a UserError anywhere below into one clear paragraph and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="orthovec")
def main() -> None:
    """Map genes across species with protein language models (ESM-2 + Qdrant).

    Typical flow: `orthovec index` each proteome, `orthovec query` a gene, `orthovec map` species
    pairs into mapping tables, `orthovec integrate` single-cell data through those tables.
    Everything lives in one atlas directory (--atlas, $ORTHOVEC_ATLAS, default ./orthovec-atlas).
    """


def _register() -> None:
    from orthovec.demo import demo_command
    from orthovec.indexer.cli import COMMANDS as indexer_commands
    from orthovec.integrate.cli import COMMANDS as integrate_commands
    from orthovec.lookup.cli import COMMANDS as lookup_commands

    for command in (*indexer_commands, *lookup_commands, *integrate_commands, demo_command):
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
