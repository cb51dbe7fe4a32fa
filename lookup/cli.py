"""Click commands of the lookup stage."""

import click

COMMANDS: list[click.Command] = []
