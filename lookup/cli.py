"""Click commands of the lookup stage: query, map, import-homology, evaluate-mapping, load."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orthovec.core.options import (
    Duration,
    atlas_option,
    console,
    emit_rows,
    number_option,
    output_format,
    qdrant_options,
)
from orthovec.lookup.settings import EVIDENCE, STRATEGIES
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError

if TYPE_CHECKING:
    from orthovec.schemas.api import HomologsResponse

#: The columns of a homolog table for people (`--format table`); TSV and JSON carry every field.
TABLE_COLUMNS = {
    "rank": "rank",
    "gene_symbol": "symbol",
    "gene_id": "gene",
    "score": "score",
    "evidence": "evidence",
    "is_one2one": "one2one",
    "relation": "relation",
    "is_rbh": "RBH",
    "identity": "identity",
    "coverage_query": "cov query",
    "coverage_target": "cov hit",
    "evalue": "E-value",
    "embedding_score": "cosine",
}


def print_results(answers: Sequence[tuple[str, HomologsResponse]], fmt: str) -> None:
    """Every query's homologs in one shape: JSON is one list of hit objects and TSV one table, each
    row with its query (`query` as given, and the gene it resolved to); tables come one per query
    and target species, captioned with the evidence that ordered them, notes below.
    """
    from orthovec.core.logs import get_logger

    if fmt in ("json", "tsv"):
        rows = [
            {
                "query": label,
                "query_species": answer.query.species,
                "query_gene_id": answer.query.gene_id,
                "query_gene_symbol": answer.query.gene_symbol,
                **hit.model_dump(),
            }
            for label, answer in answers
            for hit in answer.hits
        ]
        emit_rows(rows, fmt)
        notes = [target.note for _, answer in answers for target in answer.targets if target.note]
        for note in notes:
            get_logger("lookup").info(note)
        return
    for label, answer in answers:
        for target in answer.targets:
            hits = [hit for hit in answer.hits if hit.species == target.species]
            named = answer.query.gene_symbol or answer.query.gene_id or label
            source = f"{answer.query.species} " if answer.query.species else ""
            kind = "paralogs" if hits and hits[0].is_paralog else "homologs"
            mapping = f", mapping {target.mapping}" if target.mapping else ""
            title = f"{kind} of {source}{named} in {target.species} ({target.evidence} evidence{mapping})"
            rows = [
                {
                    short: ("yes" if value else "") if isinstance(value, bool) else _shown(name, value)
                    for name, short in TABLE_COLUMNS.items()
                    for value in [getattr(hit, name)]
                }
                for hit in hits
            ]
            if rows:
                emit_rows(rows, fmt, title=title)
            else:
                console().print(title + ": none")
            if target.note:
                console().print(target.note, style="yellow")


def _shown(name: str, value: object) -> object:
    """E-values in scientific notation (a table's 4 decimals would print 1e-37 as 0.0000)."""
    return f"{value:.2g}" if name == "evalue" and isinstance(value, float) else value


@click.command("query")
@click.argument("gene", required=False)
@click.option("--from", "from_species", help="Species of GENE.")
@click.option("--to", "to_species", multiple=True, help="Target species (repeatable; default: all others).")
@number_option("-k", "--k", "k", rule="k", default=10, show_default=True, help="Homologs per target species.")
@click.option(
    "--evidence",
    type=click.Choice(EVIDENCE),
    default="auto",
    show_default=True,
    help="Order of the homologs, as `map --evidence`; auto: the best the atlas holds (fused, alignment, embedding).",
)
@click.option("--sequence", help="Query with a raw protein sequence instead of a gene.")
@click.option("--fasta", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Query each record.")
@click.option("--model", help="Model (default: the one the species are held under).")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Embed sequences with this checkpoint (default: the one the atlas was indexed with, if it is still "
    "there); without weights, sequences are searched with MMseqs2 alone.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@atlas_option
@qdrant_options()
@output_format()
def query_command(
    gene: str | None,
    from_species: str | None,
    to_species: tuple[str, ...],
    k: int,
    evidence: str,
    sequence: str | None,
    fasta: Path | None,
    model: str | None,
    weights: Path | None,
    device: str,
    atlas: Atlas,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    fmt: str,
) -> None:
    """Homologs of GENE (symbol or ID) from --from species, or of raw sequences (--sequence/--fasta).

    Candidates come from the mapping table (`orthovec map`: one-to-one call, relation, group,
    fused score), the MMseqs2 alignments (bits, BSR, identity, coverages, E-value) and the
    embedding neighbours, ordered by the same evidence as `map`; each row says which evidence it
    has. --to the query's own species lists its paralogs. While `orthovec serve` serves the atlas,
    a gene query asks that server. Examples: `orthovec query TP53 --from human --to mouse`;
    `orthovec query --sequence MEEPQSDPSV... --to mouse --format json`.
    """
    from orthovec.lookup import homologs as service

    if sum(x is not None for x in (gene, sequence, fasta)) != 1:
        raise UserError("Give exactly one of GENE (with --from), --sequence or --fasta.")
    if gene is not None:
        if not from_species:
            raise UserError(f"Which species is {gene} from? Add --from SPECIES.")
        answer = service.query_atlas(
            atlas,
            gene,
            from_species,
            to=list(to_species),
            k=k,
            evidence=evidence,  # type: ignore[arg-type]
            model=model,
            qdrant_url=qdrant_url,
            qdrant_api_key=qdrant_api_key,
        )
        print_results([(gene, answer)], fmt)
        return
    if not to_species:
        raise UserError("Sequence queries need at least one --to SPECIES.")
    from orthovec.lookup.sequence import read_query_fasta

    records = [("sequence", sequence)] if sequence is not None else read_query_fasta(fasta)  # type: ignore[arg-type]
    answers = service.query_sequences(
        atlas,
        records,
        to=list(to_species),
        k=k,
        evidence=evidence,  # type: ignore[arg-type]
        model=model,
        weights=weights,
        device=device,
        qdrant_url=qdrant_url,
        qdrant_api_key=qdrant_api_key,
    )
    print_results([(label, answer) for (label, _), answer in zip(records, answers, strict=True)], fmt)


@click.command("map")
@click.argument("species", nargs=-1, required=True)
@click.option("--model", help="Model (default: the one all species share).")
@number_option("-k", "--k", "k", rule="k", default=10, show_default=True, help="Hits per gene.")
@click.option(
    "--evidence",
    type=click.Choice(["auto", "embedding", "alignment", "fused"]),
    default="auto",
    show_default=True,
    help="auto: fused when the pair has gene vectors and `orthovec align` output, else whichever exists.",
)
@click.option(
    "--metric",
    type=click.Choice(["cosine", "pearson", "csls"]),
    default="cosine",
    show_default=True,
    help="Embedding similarity; csls corrects hubness (genes close to many others).",
)
@number_option(
    "--margin",
    rule="margin",
    default=0.1,
    show_default=True,
    help="Homology graph: pairs within this fraction of the way from each gene's background to its best score.",
)
@number_option("--min-score", rule="min_score", default=0.0, show_default=True, help="Homology graph: minimum score.")
@number_option(
    "--max-evalue",
    rule="max_evalue",
    default=0.01,
    show_default=True,
    help="One-to-one floor: pairs whose E-value (expected chance hits as good) is above it are not called.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Output file (two species only).")
@atlas_option
@output_format("table", "tsv", "json")
def map_command(
    species: tuple[str, ...],
    model: str | None,
    k: int,
    evidence: str,
    metric: str,
    margin: float,
    min_score: float,
    max_evalue: float,
    out: Path | None,
    atlas: Atlas,
    fmt: str,
) -> None:
    """Precompute mapping tables between species A B [C ...] (every pair) from the atlas.

    Evidence: embedding similarity (exact all-vs-all in blocks), MMseqs2 alignments from
    `orthovec align`, or both fused (alignment decides where it has a hit, the embedding fills in).
    Top-k hits both ways, reciprocal best hits, one-to-one pairs above the E-value floor (global
    greedy and optimal assignment), many-to-many homology with groups. Writes
    ATLAS/mappings/MODEL/A__B.parquet (mmseqs2/ for alignment only; a groups table with three or
    more species). Example: `orthovec align human mouse && orthovec map human mouse --evidence fused`.
    """
    from orthovec.lookup.homology.mapping import MappingParams, map_species

    params = MappingParams(
        k=k,
        metric=metric,  # type: ignore[arg-type]
        margin=margin,
        min_score=min_score,
        max_evalue=max_evalue,
        evidence=evidence,  # type: ignore[arg-type]
    )
    rows = [
        {
            "pair": f"{s.species_a} → {s.species_b}" if fmt == "table" else f"{s.species_a}__{s.species_b}",
            "evidence": s.evidence,
            "genes_a": s.genes_a,
            "genes_b": s.genes_b,
            "candidates": s.candidates,
            "rbh": s.rbh,
            "one2one_greedy": s.one2one_greedy,
            "one2one_optimal": s.one2one_optimal,
            "groups": s.groups,
            "seconds": Duration(s.seconds),
            "file": Path(s.path),  # printed whole below the table
        }
        for s in map_species(atlas, list(species), model, params, out)
    ]
    emit_rows(rows, fmt, title="mappings")


@click.command("align")
@click.argument("species", nargs=-1, required=True)
@number_option("--threads", rule="threads", help="MMseqs2 threads [default: all CPUs].")
@number_option(
    "--sensitivity",
    rule="sensitivity",
    help="Exhaustive search at this MMseqs2 -s (1 to 7.5; 5.7 is MMseqs2's default) instead of the "
    "adaptive one (a fast pass, then -s 5.7 only for genes without a confident best hit; small "
    "proteomes get cheaper searches: every pair aligned, or one pass at -s 5.7; see docs/mapping.md).",
)
@atlas_option
@output_format("table", "tsv", "json")
def align_command(
    species: tuple[str, ...], threads: int | None, sensitivity: float | None, atlas: Atlas, fmt: str
) -> None:
    """Align the proteomes of species A B [C ...] (every pair) with MMseqs2, both directions.

    Protein hits are reduced to gene pairs (best bits, e-value, identity, coverages, blast score
    ratio) in ATLAS/alignments/A__B.parquet; `orthovec map` then uses them as evidence. Each
    species' search database is built once (ATLAS/species/NAME/mmseqs/) and reused. Reruns
    with unchanged proteins reuse the table. Example: `orthovec align human mouse --threads 8`.
    """
    from orthovec.lookup.homology.align import align_all
    from orthovec.schemas.tables import ALIGNMENT, read_provenance, read_table

    paths = align_all(atlas, list(species), threads=threads, sensitivity=sensitivity)
    rows = []
    for path in paths:
        provenance = read_provenance(path)
        rows.append(
            {
                "pair": path.stem,
                "mode": provenance.get("mode"),
                "sensitivity": provenance.get("sensitivity"),
                "gene_pairs": read_table(path, ALIGNMENT, ["gene_id_a"]).num_rows,
                "set_aside": sum(len(ids) for ids in (provenance.get("set_aside") or {}).values()),
                **({"file": str(path)} if fmt != "table" else {}),
            }
        )
    emit_rows(rows, fmt, title="alignments")
    if fmt == "table":
        for path in paths:
            click.echo(str(path))


@click.command("import-homology")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--from", "species_a", required=True, help="Species A (the mapping's left side).")
@click.option("--to", "species_b", required=True, help="Species B.")
@click.option(
    "--input-format",
    type=click.Choice(["biomart", "pairs"]),
    help="FILE's layout: an Ensembl BioMart export, or a table of gene pairs (required).",
)
@click.option("--strategy", type=click.Choice(STRATEGIES), default="all", show_default=True)
@click.option("--embedding-mapping", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="For fused.")
@click.option("--col-a", help="pairs: column of species A genes (default: the first).")
@click.option("--col-b", help="pairs: column of species B genes (default: the second).")
@click.option("--col-score", help="pairs: score column (default: a numeric third column, if any).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Default: ATLAS/mappings/<source>/A__B.parquet",
)
@atlas_option
@output_format(formerly=("input_format", ("biomart", "pairs")))
def import_homology_command(
    file: Path,
    species_a: str,
    species_b: str,
    input_format: str | None,
    strategy: str,
    embedding_mapping: Path | None,
    col_a: str | None,
    col_b: str | None,
    col_score: str | None,
    out: Path | None,
    atlas: Atlas,
    fmt: str,
) -> None:
    """Import Ensembl BioMart homology or a gene-pair table into the mapping schema.

    Strategies: all rows; Ensembl one2one only; hc-greedy (greedy one-to-one by orthology
    confidence then % identity); fused (identity and embedding score combined, then greedy).

    Example: orthovec import-homology mart_export.txt --from human --to mouse --input-format biomart --strategy one2one
    """
    from orthovec.lookup.homology.imported import import_homology
    from orthovec.schemas.tables import MAPPING, write_table

    if input_format is None:
        raise click.UsageError("Missing option '--input-format' (biomart or pairs).")
    columns = {"col_a": col_a, "col_b": col_b, "col_score": col_score} if input_format == "pairs" else {}
    table = import_homology(file, species_a, species_b, input_format, strategy, embedding_mapping, **columns)  # type: ignore[arg-type]
    source = "ensembl" if input_format == "biomart" else "pairs"
    target = out or atlas.mapping(f"{source}-{strategy}", species_a, species_b)
    write_table(table, target, MAPPING, {"source": str(file), "format": input_format, "strategy": strategy})
    relations = {str(r["values"]): r["counts"] for r in table.column("relation").value_counts().to_pylist()}
    emit_rows([{"pairs": table.num_rows, **relations, "mapping": target}], fmt, title="imported")


@click.command("evaluate-mapping")
@click.argument("mapping", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--truth", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
@click.option(
    "--truth-format", type=click.Choice(["biomart", "pairs", "mapping"]), default="biomart", show_default=True
)
@click.option(
    "--pairs",
    type=click.Choice(["auto", "greedy", "optimal", "relation", "rbh", "all"]),
    default="auto",
    show_default=True,
    help="Which pairs of MAPPING are its one-to-one calls [auto: greedy for orthovec maps, else one2one].",
)
@output_format("table", "tsv", "json", deprecated_json=True)
def evaluate_mapping_command(mapping: Path, truth: Path, truth_format: str, pairs: str, fmt: str) -> None:
    """Precision, recall, F1 and coverage of MAPPING's one-to-one pairs against reference one2one pairs.

    Example: orthovec evaluate-mapping ATLAS/mappings/MODEL/human__mouse.parquet --truth mart_export.txt --format json
    """
    from orthovec.lookup.homology.evaluate import evaluate, read_truth
    from orthovec.schemas.tables import MAPPING, read_table

    table = read_table(mapping, MAPPING)
    species_a, species_b = table.column("species_a")[0].as_py(), table.column("species_b")[0].as_py()
    result = evaluate(table, read_truth(truth, truth_format, species_a, species_b), pairs)  # type: ignore[arg-type]
    if fmt == "json":  # one object, as `--json` always printed
        click.echo(json.dumps(result.to_dict()))
        return
    if fmt == "tsv":
        emit_rows([result.to_dict()], fmt)
        return
    r = result
    click.echo(f"precision {r.precision:.4f} ({r.n_correct:,} of {r.n_evaluable:,} pairs whose {species_a} gene")
    click.echo("          has a reference one-to-one ortholog)")
    click.echo(f"recall    {r.recall:.4f} (of {r.n_reference:,} reference one-to-one pairs)")
    click.echo(f"F1        {r.f1:.4f}\ncoverage  {r.coverage:.4f}")
    click.echo(f"pairs     {r.n_pairs:,} ({r.pairs}; genes matched by {r.matched_by})")
    if r.graph_precision is not None:
        click.echo(
            f"graph     precision {r.graph_precision:.4f}, recall {r.graph_recall:.4f} of {r.graph_pairs:,} "
            "homology-graph pairs against every reference ortholog pair (one2many and many2many included)"
        )


@click.command("load")
@atlas_option
@qdrant_options(required=True, deprecated_api_key="--api-key")
@click.option("--species", "species", multiple=True, help="Only these species (repeatable; default all).")
@click.option("--model", help="Only this model (default all).")
@output_format("table", "tsv", "json")
def load_command(
    atlas: Atlas, qdrant_url: str, qdrant_api_key: str | None, species: tuple[str, ...], model: str | None, fmt: str
) -> None:
    """Push an atlas's gene vectors to a Qdrant server (index on a GPU box, serve from a cluster).

    Batched, retried uploads with deterministic point IDs: loading again never duplicates, and
    genes no longer in the atlas are removed from the server. Species in another embedding space
    than the server's vectors are refused, naming both.

    Example: orthovec load --qdrant-url http://localhost:6333 --qdrant-api-key KEY --species human
    """
    from orthovec.lookup.store import open_store
    from orthovec.lookup.store.load import load_atlas

    store = open_store(atlas, qdrant_url, api_key=qdrant_api_key)
    try:
        loaded = load_atlas(atlas, store, list(species) or None, model)
    finally:
        store.close()
    rows = [{"species": s.species, "model": s.model, "genes": s.genes, "stale_removed": s.removed} for s in loaded]
    emit_rows(rows, fmt, title=f"loaded into Qdrant at {qdrant_url}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to listen on every interface.")
@number_option("--port", rule="port", default=8000, show_default=True)
@atlas_option
@qdrant_options()
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Embed sequences sent to POST /homologs/sequence with this checkpoint (default: the one the atlas was "
    "indexed with, if it is still there, as `query --sequence` does); without weights, they are searched "
    "with MMseqs2 alone.",
)
@click.option(
    "--no-embed",
    is_flag=True,
    help="Search sequences with MMseqs2 alone, even where the atlas's checkpoint is at hand (a CPU-only "
    "server that should not load ESM-2).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--api-key-env",
    metavar="NAME",
    help="Require header X-API-Key equal to this environment variable's value on every data endpoint "
    "(the pages /, /docs, /redoc and /health, /openapi.json hold no data and stay open; the page asks for the key).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Allow browser calls from this origin (repeatable; default none).",
)
@number_option(
    "--request-timeout",
    rule="request_timeout",
    default=30.0,
    show_default=True,
    help="Seconds a client has to send a whole request; a slower one gets 408 and is disconnected.",
)
def serve_command(
    host: str,
    port: int,
    atlas: Atlas,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    weights: Path | None,
    no_embed: bool,
    device: str,
    api_key_env: str | None,
    cors_origins: tuple[str, ...],
    request_timeout: float,
) -> None:
    """Serve homolog queries over HTTP: a lookup page at /, the API (OpenAPI at /openapi.json, docs at /docs).

    Queries and `orthovec species` keep working beside the server (and on a read-only atlas);
    `index` into the same atlas is refused until the server stops. For many users or several API
    servers, load the atlas into a Qdrant server (`orthovec load --qdrant-url URL`) and serve with
    --qdrant-url.

    Example: orthovec serve --atlas orthovec-atlas --port 8000   (then open http://127.0.0.1:8000/)
    """
    from orthovec.lookup.serve.server import run_server

    if no_embed and weights is not None:
        raise click.UsageError("Give --weights or --no-embed, not both.")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UserError(f"--api-key-env {api_key_env}: that environment variable is empty or unset.")
    run_server(
        atlas,
        host=host,
        port=port,
        qdrant_url=qdrant_url,
        qdrant_api_key=qdrant_api_key,
        weights=weights,
        embed=not no_embed,
        device=device,
        api_key=api_key,
        cors_origins=cors_origins,
        request_timeout=request_timeout,
    )


COMMANDS: list[click.Command] = [
    query_command,
    map_command,
    align_command,
    import_homology_command,
    evaluate_mapping_command,
    load_command,
    serve_command,
]
