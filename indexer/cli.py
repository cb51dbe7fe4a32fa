"""Click commands of the indexer stage: `index`, `species`, `random-weights`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import pyarrow.parquet as pq
from orthovec.indexer.embed import PRECISIONS
from orthovec.indexer.model import ESM2_ARCHITECTURES
from orthovec.indexer.pipeline import CHUNK_RESIDUES, IndexConfig, ProgressFactory, index_proteome
from orthovec.indexer.pool import POOLINGS
from orthovec.indexer.random_weights import random_weights_command
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from orthovec.options import atlas_option, console


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected I/N, for example 0/4") from None
    return i, n


class _RateColumn(ProgressColumn):
    """Proteins and residues per second: the two throughputs people compare models and GPUs by."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        proteins = task.fields.get("proteins", 0)
        if elapsed <= 0:
            return Text("")
        return Text(f"{proteins / elapsed:,.1f} prot/s  {task.completed / elapsed:,.0f} res/s", style="cyan")


def _progress_factory(log_console: Console) -> tuple[Progress, ProgressFactory]:
    progress = Progress(
        TextColumn("embedding"),
        BarColumn(),
        TextColumn("{task.fields[proteins]:,}/{task.fields[total_proteins]:,} proteins"),
        _RateColumn(),
        TimeRemainingColumn(),
        console=log_console,
        transient=False,
    )

    def start(total_proteins: int, total_residues: int) -> Callable[[int, int], None]:
        task = progress.add_task(
            "embed",
            total=total_residues,
            proteins=0,
            total_proteins=total_proteins,
            visible=total_proteins > 0,
        )

        def advance(proteins: int, residues: int) -> None:
            current = progress.tasks[task].fields["proteins"]
            progress.update(task, advance=residues, proteins=current + proteins)

        return advance

    return progress, start


@click.command("index")
@click.argument("fasta", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--species", required=True, help="Species name used everywhere else (e.g. homo_sapiens).")
@click.option("--taxid", type=int, help="NCBI taxonomy ID (read from OX= headers when absent).")
@click.option(
    "--model",
    type=click.Choice(list(ESM2_ARCHITECTURES)),
    help="ESM-2 model [default: the --weights checkpoint's architecture, else esm2_t33_650M_UR50D].",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Local fair-esm checkpoint (.pt); default: $TORCH_HOME cache, then the hub.",
)
@click.option("--pooling", type=click.Choice(POOLINGS), default="mean", show_default=True, help="Isoforms → gene.")
@atlas_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--toks-per-batch", type=click.IntRange(min=64), default=4096, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on CUDA, fp32 on CPU. bf16 on a CPU with AVX512-BF16/AMX is faster, not exact.",
)
@click.option(
    "--long-seqs",
    type=click.Choice(["window", "truncate"]),
    default="window",
    show_default=True,
    help="Sequences over 1022 residues: average overlapping windows, or keep the first 1022.",
)
@click.option("--layer", type=int, help="Representation layer (default: the last).")
@click.option("--shard", callback=_parse_shard, metavar="I/N", help="Embed only shard I of N (0-based).")
@click.option(
    "--gene-map",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TSV protein_id<TAB>gene_id[<TAB>symbol] for headers without gene information.",
)
@click.option(
    "--unresolved",
    type=click.Choice(["report", "self"]),
    default="report",
    show_default=True,
    help="Proteins with no gene: report and skip them, or keep each as its own gene.",
)
@click.option(
    "--chunk-residues",
    type=click.IntRange(min=1),
    default=CHUNK_RESIDUES,
    show_default=True,
    help="Residues per cached chunk: the most work a killed run can lose.",
)
@click.option("--qdrant-url", envvar="ORTHOVEC_QDRANT_URL", help="Load into this Qdrant server instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
def index_command(
    fasta: Path,
    species: str,
    taxid: int | None,
    model: str | None,
    weights: Path | None,
    pooling: str,
    atlas: Atlas,
    device: str,
    toks_per_batch: int,
    precision: str,
    long_seqs: str,
    layer: int | None,
    shard: tuple[int, int] | None,
    gene_map: Path | None,
    unresolved: str,
    chunk_residues: int,
    qdrant_url: str | None,
    as_json: bool,
) -> None:
    """Index a proteome FASTA (plain or gzip): genes → ESM-2 vectors → Parquet + Qdrant.

    Safe to re-run: finished embeddings are reused, a killed run resumes where it stopped, and
    re-loading never duplicates vectors.
    """
    config = IndexConfig(
        fasta=fasta,
        species=species,
        atlas=atlas,
        model=model,
        weights=weights,
        taxid=taxid,
        pooling=pooling,  # type: ignore[arg-type]
        device=device,
        toks_per_batch=toks_per_batch,
        precision=precision,  # type: ignore[arg-type]
        long_seqs=long_seqs,  # type: ignore[arg-type]
        layer=layer,
        shard=shard,
        gene_map=gene_map,
        unresolved=unresolved,  # type: ignore[arg-type]
        qdrant_url=qdrant_url,
        chunk_residues=chunk_residues,
    )
    log_console = console(stderr=True)
    progress, start = _progress_factory(log_console)
    with progress:
        result = index_proteome(config, progress=start, log=log_console.print)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    if not result.complete:
        log_console.print(f"[yellow]{species}: shard done, species not assembled yet[/yellow]")
        return
    rate = result.n_residues_embedded / result.embed_seconds if result.embed_seconds else 0.0
    log_console.print(
        f"[green]{species}[/green]: {result.n_genes:,} genes from {result.read.n_proteins:,} proteins "
        f"({result.n_embedded_sequences:,} sequences embedded at {rate:,.0f} residues/s, "
        f"{result.n_cached_sequences:,} from cache)"
    )
    for name, path in result.paths.items():
        log_console.print(f"  {name}: {path}")


def species_rows(atlas: Atlas) -> list[dict[str, object]]:
    """One row per (species, model) in the atlas, read from Parquet metadata (cheap)."""
    rows: list[dict[str, object]] = []
    for species in atlas.species_names():
        proteins_path = atlas.proteins(species)
        n_proteins = pq.ParquetFile(proteins_path).metadata.num_rows if proteins_path.is_file() else 0
        models = atlas.models_for(species) or [None]
        for model in models:
            genes = pq.ParquetFile(atlas.genes(species, model)).metadata.num_rows if model else 0
            rows.append({"species": species, "model": model, "genes": genes, "proteins": n_proteins})
    return rows


@click.command("species")
@atlas_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def species_command(atlas: Atlas, fmt: str) -> None:
    """List the species an atlas holds: genes, proteins and model."""
    if not atlas.root.is_dir():
        raise UserError(f"No atlas at {atlas.root}. Create one with `orthovec index FASTA --species NAME`.")
    rows = species_rows(atlas)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"The atlas {atlas.root} holds no species yet.")
        return
    table = Table(title=f"atlas {atlas.root}")
    for column in ("species", "model", "genes", "proteins"):
        table.add_column(column, justify="right" if column in ("genes", "proteins") else "left")
    for row in rows:
        table.add_row(
            str(row["species"]),
            str(row["model"] or "(not embedded)"),
            f"{row['genes']:,}",
            f"{row['proteins']:,}",
        )
    console().print(table)


COMMANDS: list[click.Command] = [index_command, species_command, random_weights_command]
