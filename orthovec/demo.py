"""`orthovec demo`: the main job end to end on a small shipped example.

Indexes 150 human and 150 Xenopus tropicalis proteins (orthovec/examples/README.md says where
they come from), maps the two species, scores the one-to-one pairs against the DIOPT orthologs
they were chosen from, and shows a few homolog queries: everything a user does with a real
proteome, in a minute on a laptop CPU with the 8M model.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import click

from orthovec.indexer.pipeline import IndexConfig, index_proteome
from orthovec.lookup.cli import print_hits
from orthovec.lookup.evaluate import evaluate
from orthovec.lookup.homology import import_pairs
from orthovec.lookup.mapping import map_species
from orthovec.lookup.query import homologs_of_gene
from orthovec.lookup.store import open_store
from orthovec.options import console
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import MAPPING, read_table

EXAMPLES = files("orthovec") / "examples"
SPECIES = {"human": "human_demo.fasta.gz", "xenopus_tropicalis": "xenopus_tropicalis_demo.fasta.gz"}
QUERIES = ("AK2", "ETF1", "EEF1B2")


@click.command("demo")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="fair-esm checkpoint (default: esm2_t6_8M_UR50D from $TORCH_HOME or the hub).",
)
@click.option("--model", default="esm2_t6_8M_UR50D", show_default=True, help="Used when --weights is not given.")
@click.option(
    "--atlas",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("orthovec-demo"),
    show_default=True,
    help="Where the demo atlas goes (kept apart from your own atlas).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def demo_command(weights: Path | None, model: str, atlas: Path, device: str) -> None:
    """Run the main job on a shipped example: index two species, map them, query homologs."""
    out = console()
    atlas_dir = Atlas(atlas)
    for species, filename in SPECIES.items():
        out.print(f"[bold]1. index[/bold] {species}")
        result = index_proteome(
            IndexConfig(
                fasta=Path(str(EXAMPLES / filename)),
                species=species,
                atlas=atlas_dir,
                model=None if weights else model,
                weights=weights,
                device=device,
            ),
            log=lambda line: out.print(f"   {line}"),
        )
        model = result.model
    out.print("[bold]2. map[/bold] human ↔ xenopus_tropicalis")
    summary = map_species(atlas_dir, list(SPECIES), model)[0]
    out.print(
        f"   {summary.candidates:,} candidate pairs, {summary.rbh} reciprocal best hits, "
        f"{summary.one2one_greedy} one-to-one pairs, {summary.groups} homology groups"
    )
    truth = import_pairs(Path(str(EXAMPLES / "demo_orthologs.tsv")), *SPECIES)
    scores = evaluate(read_table(Path(summary.path), MAPPING), truth)
    out.print(
        f"   one-to-one pairs agreeing with DIOPT (7/7 tools): {scores.n_correct} of {scores.n_reference} "
        f"(precision {scores.precision:.2f})"
    )
    out.print("[bold]3. query[/bold] homologs of human genes in the frog")
    store = open_store(atlas_dir)
    try:
        for gene in QUERIES:
            print_hits(
                homologs_of_gene(store, gene, "human", ["xenopus_tropicalis"], k=3, model=model),
                "table",
                gene,
            )
    finally:
        store.close()
    out.print("[bold]4. files[/bold]")
    for species in SPECIES:
        out.print(f"   genes:    {atlas_dir.genes(species, model)}")
    out.print(f"   mapping:  {summary.path}")
    out.print(f"   store:    {atlas_dir.qdrant(model)} (embedded Qdrant Edge)")
    out.print(f"Next: orthovec query GENE --from human --to xenopus_tropicalis --atlas {atlas}")
