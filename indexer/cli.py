"""Click commands of the indexer stage: `index`, `species`, `random-weights`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orthovec.core.options import atlas_option, console, emit_rows, output_format, qdrant_options, shard_option
from orthovec.core.progress import WorkProgress
from orthovec.embedding.architectures import (
    ESM2_ARCHITECTURES,
    PRECISIONS,
    RANDOM_ARCHITECTURES,
    LongSeqs,
    Precision,
    architecture_name,
)
from orthovec.indexer.settings import CHUNK_RESIDUES, POOLINGS, Pooling, Unresolved
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from orthovec.indexer.pipeline import ProgressFactory


@contextlib.contextmanager
def _embedding_progress(log_console: Console) -> Iterator[ProgressFactory]:
    """Starts the embedding progress once the pipeline knows how much work is left."""
    with contextlib.ExitStack() as stack:

        def start(total_proteins: int, total_residues: int) -> Callable[[int, int], None]:
            work = stack.enter_context(WorkProgress("embedding", total_residues, "residues", log_console))
            return lambda proteins, residues: work.advance(residues, proteins=proteins)

        yield start


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
@shard_option("Embed only shard I of N (0-based).")
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
@qdrant_options()
@output_format("table", "json", deprecated_json=True)
def index_command(
    fasta: Path,
    species: str,
    taxid: int | None,
    model: str | None,
    weights: Path | None,
    pooling: Pooling,  # click's Choice guarantees each of these literals
    atlas: Atlas,
    device: str,
    toks_per_batch: int,
    precision: Precision,
    long_seqs: LongSeqs,
    layer: int | None,
    shard: tuple[int, int] | None,
    gene_map: Path | None,
    unresolved: Unresolved,
    chunk_residues: int,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    fmt: str,
) -> None:
    """Index a proteome FASTA (plain or gzip): genes → ESM-2 vectors → Parquet + Qdrant.

    Safe to re-run: finished embeddings are reused, a killed run resumes where it stopped, and
    re-loading never duplicates vectors. A run that fails or is killed leaves the species as it
    was; one that cannot commit (a server holds the atlas, another embedding space) stops at once.

    Example: orthovec index UP000005640_9606.fasta.gz --species human --weights esm2_t33_650M_UR50D.pt
    """
    from orthovec.indexer.pipeline import IndexConfig
    from orthovec.indexing import index_proteome

    config = IndexConfig(
        fasta=fasta,
        species=species,
        atlas=atlas,
        model=model,
        weights=weights,
        taxid=taxid,
        pooling=pooling,
        device=device,
        toks_per_batch=toks_per_batch,
        precision=precision,
        long_seqs=long_seqs,
        layer=layer,
        shard=shard,
        gene_map=gene_map,
        unresolved=unresolved,
        chunk_residues=chunk_residues,
    )
    log_console = console(stderr=True)
    with _embedding_progress(log_console) as start:
        result = index_proteome(
            config, progress=start, log=log_console.print, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key
        )
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    if result.assembled_by:
        log_console.print(f"[green]{species}[/green]: shard done; {result.assembled_by} assembles the species")
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


@click.command("species")
@atlas_option
@output_format("table", "tsv", "json")
def species_command(atlas: Atlas, fmt: str) -> None:
    """List the species an atlas holds and their state: complete, incomplete, or store missing.

    "incomplete": the last index run did not finish (run it again); "store missing": the tables
    are there but the embedded store lacks the species' vectors. Works on a read-only atlas and
    while a server runs. Example: orthovec species --atlas ./orthovec-atlas --format json
    """
    if not atlas.root.is_dir():
        raise UserError(f"No atlas at {atlas.root}. Create one with `orthovec index FASTA --species NAME`.")
    from orthovec.lookup.store.load import species_states

    rows = [row.to_dict() for row in species_states(atlas)]
    if fmt != "table":
        emit_rows(rows, fmt)
        return
    if not rows:
        click.echo(f"The atlas {atlas.root} holds no species yet.")
        return
    from rich.table import Table

    table = Table(title=f"atlas {atlas.root}")
    for column in ("species", "model", "genes", "proteins", "state", "note"):
        table.add_column(column, justify="right" if column in ("genes", "proteins") else "left")
    for row in rows:
        table.add_row(
            str(row["species"]),
            str(row["model"] or "(not embedded)"),
            f"{row['genes']:,}",
            f"{row['proteins']:,}",
            str(row["state"]),
            str(row["note"]),
        )
    console().print(table)


@click.command("random-weights")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(list(RANDOM_ARCHITECTURES)), default="8M", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def random_weights_command(out: Path, arch: str, seed: int) -> None:
    """Write a random-weight ESM-2 checkpoint of a real architecture to OUT (a .pt file or a directory).

    For tests and benchmarks: speed does not depend on weight values, so they run the real loading
    and embedding code without the pretrained weights. Embeddings from random weights carry no biology.

    Example: orthovec random-weights /tmp/esm2_t6_8M_UR50D.pt --arch 8M
    """
    from orthovec.embedding.random_weights import write_random_checkpoint

    path = write_random_checkpoint(out, arch, seed)
    layers, dim, _ = RANDOM_ARCHITECTURES[arch]
    click.echo(f"{path}: random {architecture_name(layers, dim)} ({path.stat().st_size / 1e6:.1f} MB)")


COMMANDS: list[click.Command] = [index_command, species_command, random_weights_command]
