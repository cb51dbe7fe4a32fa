"""Click commands of the indexer stage."""

import click

COMMANDS: list[click.Command] = []
