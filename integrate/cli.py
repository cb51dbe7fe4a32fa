"""Click commands of the integrate stage."""

import click

COMMANDS: list[click.Command] = []
