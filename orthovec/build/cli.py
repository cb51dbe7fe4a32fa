"""Click commands that build an atlas: `index` (one proteome), `species` (what the atlas holds),
`build` (a manifest → a whole atlas) and `fetch-proteome`.

They sit on the top floor because indexing ends by loading the store, and a species' state is read
from both the indexer's tables and the store: composing stages is this floor's job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orthovec.core.options import (
    Duration,
    atlas_option,
    console,
    emit_rows,
    format_duration,
    number_option,
    output_format,
    qdrant_options,
    shard_option,
)
from orthovec.embedding.architectures import ESM2_ARCHITECTURES, PRECISIONS, LongSeqs, Precision
from orthovec.indexer.settings import CHUNK_RESIDUES, POOLINGS, Pooling, Unresolved
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound

if TYPE_CHECKING:
    from rich.console import Console

    from orthovec.build.plan import BuildReport, Outcome
    from orthovec.indexer.pipeline import IndexResult, ProgressFactory


@contextlib.contextmanager
def _embedding_progress(log_console: Console, label: str = "embedding") -> Iterator[ProgressFactory]:
    """Starts the embedding progress once the pipeline knows how much work is left."""
    from orthovec.core.progress import WorkProgress

    with contextlib.ExitStack() as stack:

        def start(total_proteins: int, total_residues: int) -> Callable[[int, int], None]:
            work = stack.enter_context(WorkProgress(label, total_residues, "residues", log_console))
            return lambda proteins, residues: work.advance(residues, proteins=proteins)

        yield start


@click.command("index")
@click.argument("fasta", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--species", required=True, help="Species name used everywhere else (e.g. homo_sapiens).")
@number_option("--taxid", rule="taxid", help="NCBI taxonomy ID (read from OX= headers when absent).")
@click.option(
    "--embed/--no-embed",
    default=True,
    show_default=True,
    help="--no-embed registers the proteins (and the search database) for alignment only: no weights, no "
    "GPU. A later run with --weights adds the embeddings.",
)
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
@number_option("--toks-per-batch", rule="toks_per_batch", default=4096, show_default=True)
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
@number_option("--layer", rule="layer", help="Representation layer (default: the last).")
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
@number_option(
    "--chunk-residues",
    rule="chunk_residues",
    default=CHUNK_RESIDUES,
    show_default=True,
    help="Residues per cached chunk: the most work a killed run can lose.",
)
@qdrant_options()
@output_format("table", "tsv", "json", deprecated_json=True)
def index_command(
    fasta: Path,
    species: str,
    taxid: int | None,
    embed: bool,
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
    With --no-embed it registers the proteins for alignment only (align, map --evidence alignment);
    running it again later with --weights adds the embeddings.

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
        embed=embed,
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
        result = index_proteome(config, progress=start, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif fmt == "tsv":
        emit_rows([_index_row(result)], fmt)
    else:
        _print_index(result, log_console)


def _index_row(result: IndexResult) -> dict[str, object]:
    return {
        "species": result.species,
        "model": result.model,
        "state": result.state,
        "records": result.read.n_records,
        "proteins": result.read.n_proteins,
        "genes": result.n_genes,
        "embedded": result.n_embedded_sequences,
        "from_cache": result.n_cached_sequences,
        "chunks_missing": result.chunks_missing,
    }


def _print_index(result: IndexResult, out: Console) -> None:
    species = result.species
    if result.assembled_by:
        out.print(f"{species}: shard done; {result.assembled_by} assembles the species", style="green")
        return
    if not result.complete:
        out.print(f"{species}: shard done, species not assembled yet", style="yellow")
        return
    if result.model is None:
        out.print(
            f"{species}: {result.n_genes:,} genes from {result.read.n_proteins:,} proteins, registered for "
            "alignment only (orthovec align, orthovec map --evidence alignment); run `orthovec index` again "
            "with --weights to add embeddings",
            style="green",
        )
    else:
        rate = result.n_residues_embedded / result.embed_seconds if result.embed_seconds else 0.0
        out.print(
            f"{species}: {result.n_genes:,} genes from {result.read.n_proteins:,} proteins "
            f"({result.n_embedded_sequences:,} sequences embedded at {rate:,.0f} residues/s, "
            f"{result.n_cached_sequences:,} from cache)",
            style="green",
        )
    for name, path in result.paths.items():
        out.print(f"  {name}: {path}")


@click.command("species")
@atlas_option
@output_format("table", "tsv", "json")
def species_command(atlas: Atlas, fmt: str) -> None:
    """List the species an atlas holds and what each has: proteins, gene vectors per model, store points.

    "complete" with the note "alignment only": registered with `index --no-embed`; "incomplete":
    the last index run did not finish (run it again); "store missing": the tables are there but
    the embedded store lacks the species' vectors. Works on a read-only atlas and while a server
    runs. Example: orthovec species --atlas ./orthovec-atlas --format json
    """
    if not atlas.root.is_dir():
        raise NotFound(f"No atlas at {atlas.root}. Create one with `orthovec index FASTA --species NAME`.")
    from orthovec.build.species import species_states

    rows = [row.to_dict() for row in species_states(atlas)]
    if fmt != "table":
        emit_rows(rows, fmt)
        return
    if not rows:
        click.echo(f"The atlas {atlas.root} holds no species yet.")
        return
    from rich.table import Table

    table = Table(title=f"atlas {atlas.root}")
    for column in ("species", "model", "genes", "proteins", "stored", "state", "note"):
        table.add_column(column, justify="right" if column in ("genes", "proteins", "stored") else "left")
    for row in rows:
        stored = row["stored"]
        table.add_row(
            str(row["species"]),
            str(row["model"] or "(not embedded)"),
            f"{row['genes']:,}",
            f"{row['proteins']:,}",
            "" if stored is None else f"{stored:,}",
            str(row["state"]),
            str(row["note"]),
        )
    console().print(table)


@click.command("build")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@atlas_option
@click.option("--dry-run", is_flag=True, help="Print the plan (each step, and why it would run) and stop.")
@number_option(
    "-j",
    "--jobs",
    rule="jobs",
    default=1,
    show_default=True,
    help="Independent steps side by side (downloads, alignments, mappings); index steps take turns.",
)
@shard_option(
    "Array task I of N: embed its share of every proteome and build its share of the search databases, "
    "alignments and mappings; a last run without --shard does what is left."
)
@click.option("--refresh-sources", is_flag=True, help="Download remote sources again; unchanged ones redo nothing.")
@qdrant_options()
@output_format("table", "tsv", "json")
def build_command(
    manifest: Path,
    atlas: Atlas,
    dry_run: bool,
    jobs: int,
    shard: tuple[int, int] | None,
    refresh_sources: bool,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    fmt: str,
) -> None:
    """Build (or bring up to date) a whole atlas from MANIFEST: fetch, index, align, map, group, all resumable.

    Every step whose inputs and settings are unchanged since it last ran is skipped, so a killed
    build resumes where it stopped and a finished one reruns as a no-op; a changed source redoes only
    what depends on it. With --shard I/N (a SLURM array) each task embeds its share of every
    proteome and builds its share of the search databases, alignments and mappings; one last run
    without --shard does what is left (the groups, anything a task could not reach or missed).

    Example: orthovec build atlas.toml --atlas /data/atlas --jobs 2
    """
    from orthovec.build.fetch import FetchConfig
    from orthovec.build.manifest import load_manifest
    from orthovec.build.plan import BuildEvents, BuildOptions, run_build

    loaded = load_manifest(manifest)
    if qdrant_url:  # the command line (or its environment variable) wins over the manifest's qdrant_url
        loaded = dataclasses.replace(loaded, atlas=dataclasses.replace(loaded.atlas, qdrant_url=qdrant_url))
    options = BuildOptions(
        jobs=jobs,
        shard=shard,
        dry_run=dry_run,
        refresh_sources=refresh_sources,
        fetch=FetchConfig.from_environ(os.environ),
        qdrant_api_key=qdrant_api_key,
    )
    events = BuildEvents(embedding_progress=_progress(console(stderr=True)))
    report = run_build(loaded, atlas, options, events)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif fmt == "tsv":
        emit_rows([_outcome_row(outcome) for outcome in report.outcomes], fmt)
    else:
        _print_report(report)


def _outcome_row(outcome: Outcome) -> dict[str, object]:
    return {
        "step": outcome.step,
        "kind": outcome.kind,
        "status": outcome.status,
        "seconds": Duration(outcome.seconds),
        "built_seconds": None if outcome.built_seconds is None else Duration(outcome.built_seconds),
        "reason": outcome.reason,
    }


def _progress(log_console: Console) -> Callable[[str], contextlib.AbstractContextManager[ProgressFactory]]:
    """Per species, a context that starts the embedding bar once the indexer knows the work left."""
    return lambda species: _embedding_progress(log_console, f"embedding {species}")


def _print_report(report: BuildReport) -> None:
    from rich.table import Table

    out = console()
    if report.dry_run:
        plan = Table(title=f"plan for {report.manifest} → {report.atlas}")
        for column in ("step", "status", "why"):
            plan.add_column(column)
        for outcome in report.outcomes:
            plan.add_row(outcome.step, outcome.status, outcome.reason)
        out.print(plan)
        to_run = sum(o.status == "to run" for o in report.outcomes)
        out.print(f"{to_run} of {len(report.outcomes)} steps would run." if to_run else "Nothing to do.")
        return
    fetched = {o.step.split(":", 1)[1]: o for o in report.of_kind("fetch")}
    indexed = {o.step.split(":", 1)[1]: o for o in report.of_kind("index")}
    species = Table(title="species")
    for column in ("species", "records", "genes", "proteins", "skipped records", "proteins step", "embedding"):
        species.add_column(column, justify="right" if column in ("records", "genes", "proteins") else "left")
    for outcome in report.of_kind("proteins"):
        name, info = outcome.step.split(":", 1)[1], outcome.info
        skipped = ", ".join(f"{reason} {count:,}" for reason, count in sorted(info.get("skipped", {}).items()))
        records = info.get("records", fetched[name].info.get("records") if name in fetched else None)
        index = indexed.get(name)
        embedding = "off (alignment only)" if index is None else f"{index.info.get('model', '')} {index.status}"
        species.add_row(
            name,
            _count(records),
            _count(info.get("genes")),
            _count(info.get("proteins")),
            skipped or "none",
            outcome.status,
            embedding.strip(),
        )
    out.print(species)
    maps = report.of_kind("map")
    if maps:
        aligned = {o.step.split(":", 1)[1]: o.status for o in report.of_kind("align")}
        pairs = Table(title="pairs")
        columns = (
            "pair",
            "evidence",
            "candidates",
            "RBH",
            "1:1 greedy",
            "1:1 optimal",
            "groups",
            "alignment",
            "status",
        )
        for column in columns:
            pairs.add_column(
                column, justify="left" if column in ("pair", "evidence", "alignment", "status") else "right"
            )
        for outcome in maps:
            pair, info = outcome.step.split(":", 1)[1], outcome.info
            pairs.add_row(
                pair.replace("__", " → "),
                str(info.get("evidence", "")),
                _count(info.get("candidates")),
                _count(info.get("rbh")),
                _count(info.get("one2one_greedy")),
                _count(info.get("one2one_optimal")),
                _count(info.get("groups")),
                aligned.get(pair, "off"),
                outcome.status,
            )
        out.print(pairs)
    steps = Table(title="steps")
    for column in ("step", "status", "took", "built in", "note"):
        steps.add_column(column, justify="right" if column in ("took", "built in") else "left")
    for outcome in report.outcomes:
        built = "" if outcome.built_seconds is None else format_duration(outcome.built_seconds)
        steps.add_row(outcome.step, outcome.status, format_duration(outcome.seconds), built, outcome.reason)
    out.print(steps)
    ran, took = sum(o.status == "ran" for o in report.outcomes), format_duration(report.seconds)
    if report.nothing_to_do:
        out.print(f"Nothing to do: {report.atlas} is up to date with {report.manifest} ({took}).")
    else:
        out.print(f"{ran} steps ran, {len(report.outcomes) - ran} skipped or waiting, in {took}.")
    for outcome in report.outcomes:
        if outcome.status == "unavailable":
            out.print(f"{outcome.step} unavailable: {outcome.reason}", style="yellow")


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


@click.command("fetch-proteome")
@click.argument("source")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the FASTA.")
@click.option("--sha256", help="Expected SHA-256 of the file; a different download is refused.")
@atlas_option
@output_format("table", "tsv", "json", deprecated_json=True)
def fetch_proteome_command(source: str, out: Path, sha256: str | None, atlas: Atlas, fmt: str) -> None:
    """Download a proteome: a UniProt proteome id, ensembl:SPECIES@RELEASE, or an http(s) URL.

    Transfers resume and retry with backoff; the file is checked (gzip complete, FASTA records,
    no HTML error page, the published checksum where one exists) and kept in ATLAS/cache/downloads
    under its SHA-256 before it is copied to --out. $ORTHOVEC_UNIPROT_URL and $ORTHOVEC_ENSEMBL_URL
    point at mirrors.

    Example: orthovec fetch-proteome UP000005640 --out human.fasta.gz
    """
    from orthovec.build.fetch import FetchConfig, copy_verified, fetch_proteome
    from orthovec.build.manifest import parse_source

    parsed = parse_source(source, Path.cwd(), "SOURCE")
    fetched = fetch_proteome(
        parsed,
        atlas.download_cache(),
        FetchConfig.from_environ(os.environ),
        expected_sha256=sha256.lower() if sha256 else None,
    )
    copy_verified(fetched, out)
    if fmt == "json":  # the provenance record
        click.echo(json.dumps({**fetched.to_dict(), "out": str(out)}, indent=2, default=str))
        return
    row = {"records": fetched.n_records, "bytes": fetched.bytes, "sha256": fetched.sha256}
    emit_rows([{**row, "from": fetched.url or fetched.path, "out": out}], fmt)


COMMANDS: list[click.Command] = [index_command, species_command, build_command, fetch_proteome_command]
