"""Click commands of the lookup stage: query, map, import-homology, evaluate-mapping, load."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orthovec.core.options import atlas_option, console, emit_rows, number_option, output_format, qdrant_options
from orthovec.lookup.settings import STRATEGIES
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError

if TYPE_CHECKING:
    from orthovec.lookup.query import Hit

HIT_COLUMNS = ("species", "gene_id", "gene_symbol", "score", "rank", "is_rbh", "margin")


def print_results(
    results: Sequence[tuple[str, Sequence[Hit]]],
    fmt: str,
    alignments: Sequence[dict[str, float] | None] | None = None,
) -> None:
    """Every query's hits in one shape: JSON is one list of hit objects, each with its query's fields
    (`query` is the gene or record as given); TSV has one header; tables come one per query.

    `alignments` (a gene query on an atlas with `orthovec align` output) adds each hit's MMseqs2
    evidence: an `alignment` object in JSON (null where MMseqs2 found no hit), columns otherwise.
    """
    from orthovec.lookup.homology.align import HIT_EVIDENCE

    evidence = list(alignments) if alignments is not None else None

    def aligned(index: int) -> list[str]:
        if evidence is None:
            return []
        found = evidence[index]
        return [f"{found[c]:.3g}" if found else "" for c in HIT_EVIDENCE]

    extra = list(HIT_EVIDENCE) if evidence is not None else []
    if fmt == "json":
        rows = [{"query": label, **h.to_dict()} for label, hits in results for h in hits]
        if evidence is not None:
            rows = [{**row, "alignment": found} for row, found in zip(rows, evidence, strict=True)]
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "tsv":
        click.echo("\t".join(["query", *HIT_COLUMNS, *extra]))
        for label, hits in results:
            for i, h in enumerate(hits):
                query = h.query_gene_symbol or h.query_gene_id or label
                cells = ["" if getattr(h, c) is None else str(getattr(h, c)) for c in HIT_COLUMNS]
                click.echo("\t".join([query, *cells, *aligned(i)]))
    else:
        from rich.table import Table

        for label, hits in results:
            table = Table(title=label)
            for column in (*HIT_COLUMNS, *extra):
                table.add_column(column, justify="right" if column in ("score", "rank", "margin", *extra) else "left")
            for i, h in enumerate(hits):
                margin = "" if h.margin is None else f"{h.margin:.4f}"
                rbh = "RBH" if h.is_rbh else ""
                cells = [h.species, h.gene_id, h.gene_symbol or "", f"{h.score:.4f}", str(h.rank), rbh, margin]
                table.add_row(*cells, *aligned(i))
            console().print(table)


@click.command("query")
@click.argument("gene", required=False)
@click.option("--from", "from_species", help="Species of GENE.")
@click.option("--to", "to_species", multiple=True, help="Target species (repeatable; default: all others).")
@click.option("-k", "--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--sequence", help="Query with a raw protein sequence instead of a gene.")
@click.option("--fasta", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Query each record.")
@click.option("--model", help="Model (default: the only one in the store).")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="For sequences.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "tsv"]), default="table", show_default=True)
@atlas_option
@qdrant_options()
def query_command(
    gene: str | None,
    from_species: str | None,
    to_species: tuple[str, ...],
    k: int,
    sequence: str | None,
    fasta: Path | None,
    model: str | None,
    weights: Path | None,
    device: str,
    fmt: str,
    atlas: Atlas,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
) -> None:
    """Homologs of GENE (symbol or ID) from --from species, or of raw sequences (--sequence/--fasta).

    Each hit has its cosine score, rank, margin to the next hit and whether it is a reciprocal
    best hit; gene queries also show MMseqs2 bits, BSR, identity and E-value when `orthovec align`
    has aligned the species. Examples: `orthovec query TP53 --from human --to mouse`;
    `orthovec query --sequence MEEPQSDPSV... --to mouse --format json`.
    """
    from orthovec.lookup.query import choose_model, homologs_of_gene, homologs_of_vectors
    from orthovec.lookup.sequence import embedder_for_atlas
    from orthovec.lookup.store import open_store
    from orthovec.lookup.store.load import check_store_space

    if sum(x is not None for x in (gene, sequence, fasta)) != 1:
        raise UserError("Give exactly one of GENE (with --from), --sequence or --fasta.")
    store = open_store(atlas, qdrant_url, qdrant_api_key, read_only=True)
    try:
        for stored_model in [model] if model else store.models():
            check_store_space(store, stored_model)
        if gene is not None:
            if not from_species:
                raise UserError(f"Which species is {gene} from? Add --from SPECIES.")
            hits = homologs_of_gene(store, gene, from_species, list(to_species), k, model)
            from orthovec.lookup.homology.align import hit_alignments

            alignments = (
                hit_alignments(atlas, from_species, str(hits[0].query_gene_id), [(h.species, h.gene_id) for h in hits])
                if hits
                else None
            )
            print_results([(gene, hits)], fmt, alignments)
            return
        if not to_species:
            raise UserError("Sequence queries need at least one --to SPECIES.")
        chosen = choose_model(store, model)
        if sequence is not None:
            labels, sequences = ["sequence"], [sequence]
        else:
            from orthovec.indexer.proteome import read_proteome  # loads fair-esm (and torch): FASTA queries only

            proteins, _ = read_proteome(fasta, "query", unresolved="self")  # type: ignore[arg-type]
            labels, sequences = (
                proteins.column("protein_id").to_pylist(),
                proteins.column("sequence").to_pylist(),
            )
        vectors = embedder_for_atlas(atlas, chosen, weights, device)(sequences)
        results = homologs_of_vectors(store, chosen, vectors, list(to_species), k)
    finally:
        store.close()
    print_results(list(zip(labels, results, strict=True)), fmt)


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
            "seconds": round(s.seconds, 2),
            "file": s.path,
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
    "adaptive one (a fast pass, then -s 5.7 only for genes without a confident best hit).",
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
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@atlas_option
@qdrant_options()
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="ESM-2 checkpoint the atlas was indexed with; enables POST /homologs/sequence.",
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
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0.1),
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
        device=device,
        api_key=api_key,
        cors_origins=cors_origins,
        request_timeout=request_timeout,
        log=lambda line: click.echo(line, err=True),
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
