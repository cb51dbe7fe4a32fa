"""The `orthovec` command: one group composed from each stage's `cli.COMMANDS`, loaded on demand.

Stage `cli.py` modules import only click and light option choices at module level; torch, scanpy,
pyarrow and the rest load inside the command that needs them, so `orthovec --help` and every
`--help` answer at once. Importing this module has no side effects beyond defining the group.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from orthovec.core.version import __version__
from orthovec.schemas.errors import UserError

#: Modules whose `COMMANDS` list joins the group, in the order `--help` lists their commands.
STAGE_CLIS = ("orthovec.indexer.cli", "orthovec.lookup.cli", "orthovec.integrate.cli", "orthovec.build.cli")


class _Group(click.Group):
    """Loads the stages' commands on demand (a command imports only the stage modules up to its
    own), and turns a UserError anywhere below into one clear paragraph and exit code 2."""

    def _load(self, module: str) -> None:
        for command in importlib.import_module(module).COMMANDS:
            self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in STAGE_CLIS:
            self._load(module)
        return list(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        stages = iter(STAGE_CLIS)
        while cmd_name not in self.commands and (module := next(stages, None)) is not None:
            self._load(module)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from orthovec.core.logs import attach_cli_handler
        from orthovec.core.options import console

        attach_cli_handler(console(stderr=True))
        try:
            return super().invoke(ctx)
        except UserError as err:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            click.echo(f"Error: {err.render(_flag_namer(command))}", err=True)
            sys.exit(2)


def _flag_namer(command: click.Command | None) -> Callable[[str], str | None]:
    """How the command line spells a library parameter: its longest option (`--max-evalue`), an
    argument's metavar (`SPECIES`), or the Python keyword when no option of the command takes it."""
    spelled: dict[str, str] = {}
    pending = [command] if command is not None else []
    while pending:
        current = pending.pop()
        for param in current.params:
            if param.name and param.name not in spelled:
                if isinstance(param, click.Option):
                    spelled[param.name] = max(param.opts, key=len)
                else:
                    spelled[param.name] = param.human_readable_name.upper()
        if isinstance(current, click.Group):
            pending.extend(current.commands.values())

    return spelled.get


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="orthovec")
def main() -> None:
    """Map genes across species with protein language models (ESM-2 + Qdrant).

    Typical flow: `orthovec index` each proteome, `orthovec align` and `orthovec map` species
    pairs into mapping tables, `orthovec query` a gene, `orthovec integrate` single-cell data
    through the tables. Everything lives in one atlas directory (--atlas, $ORTHOVEC_ATLAS, default
    ./orthovec-atlas). Commands that print results take --format table|tsv|json.

    Example: orthovec demo
    """


@main.command("demo")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="fair-esm ESM-2 checkpoint: adds embeddings to the alignment-only demo "
    "[default: --model's checkpoint in $TORCH_HOME's hub cache, if there; nothing is downloaded].",
)
@click.option("--model", default="esm2_t6_8M_UR50D", show_default=True, help="Looked up when --weights is not given.")
@click.option(
    "--atlas",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("orthovec-demo"),
    show_default=True,
    help="Where the demo atlas goes (kept apart from your own atlas).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def demo_command(weights: Path | None, model: str, atlas: Path, device: str) -> None:
    """Run the main job on a shipped example: index two species, align and map them, show homologs.

    Runs with no network and no weights (alignment only); --weights adds ESM-2 embeddings.

    Example: orthovec demo   (or: orthovec random-weights /tmp/8M.pt && orthovec demo --weights /tmp/8M.pt)
    """
    import shlex

    from orthovec.core.options import console
    from orthovec.demo import FROG, HUMAN, QUERIES, run_demo
    from orthovec.lookup.cli import print_results
    from orthovec.schemas.atlas import Atlas

    out = console()
    atlas_dir = Atlas(atlas)
    result = run_demo(atlas_dir, weights=weights, model=model, device=device)
    summary, agreement = result.mapping, result.agreement
    out.print(
        f"{summary.candidates:,} candidate pairs, {summary.rbh} reciprocal best hits, "
        f"{summary.one2one_greedy} one-to-one pairs, {summary.groups} homology groups ({summary.evidence} evidence)"
    )
    out.print(
        f"one-to-one pairs agreeing with DIOPT (7/7 tools): {agreement.n_correct} of {agreement.n_reference} "
        f"(precision {agreement.precision:.2f})"
    )
    if result.alignment_only:
        out.print(
            f"Alignment only: no ESM-2 weights were given and none are cached at {result.looked_for}, so the "
            "species were indexed without embeddings and mapped on MMseqs2 alignments alone (real sequence "
            "evidence). Add embeddings with --weights PATH (a fair-esm ESM-2 checkpoint).",
            style="yellow",
        )
    elif result.random_weights:
        out.print(
            "These weights are random (orthovec random-weights): embedding scores, and the homologs below, "
            "measure the code path, not biology. The one-to-one calls above rest on the MMseqs2 alignments, "
            "which are real sequence evidence. Pass pretrained ESM-2 weights for real embeddings.",
            style="yellow",
        )
    out.print(f"Homologs of {HUMAN} genes in {FROG} (what `orthovec query` answers):")
    print_results(list(result.queries.items()), "table")
    out.print("Files:")
    for species in (HUMAN, FROG):
        out.print(f"  proteins:  {atlas_dir.proteins(species)}")
        if result.model:
            out.print(f"  genes:     {atlas_dir.genes(species, result.model)}")
    out.print(f"  alignment: {atlas_dir.alignment(HUMAN, FROG)}")
    out.print(f"  mapping:   {summary.path}")
    if result.model:
        out.print(f"  store:     {atlas_dir.qdrant(result.model)} (embedded Qdrant Edge)")
    where = shlex.quote(str(atlas))
    out.print(f"Next: orthovec query {QUERIES[0]} --from {HUMAN} --to {FROG} --atlas {where}")
    out.print(f"Next: orthovec species --atlas {where}")


if __name__ == "__main__":
    main()
