"""Protein sequences searched against a species' proteome with MMseqs2, answered gene by gene.

"What is the homolog of this protein in mouse?" needs no weights: the atlas holds the proteomes.
A query runs the same binary, scoring and gene reduction as `orthovec align` (`align.py`)
against the species' search database (`databases.py`), through MMseqs2's precomputed k-mer
index kept on disk and memory-mapped (`--db-load-mode 2`): a 400-residue query against the
17k-protein human proteome takes well under a second once the index is in the page cache,
where building the k-mer table for each query took 12-18 s.

One row per (query, target gene), best first: the gene's best-scoring protein gives bits,
E-value, identity, both coverages and the blast score ratio (bits over the larger of the two
self-scores, as in `align`). Work files live in a private temporary directory, so a read-only
atlas can be searched once its database and index exist.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa

from orthovec.core.logs import get_logger
from orthovec.lookup.homology import mmseqs
from orthovec.lookup.homology.align import AlignParams
from orthovec.lookup.homology.databases import SearchDatabase, build_index, open_database, species_proteins
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, UserError
from orthovec.schemas.parameters import check_number
from orthovec.schemas.tables import SEQUENCE_HITS

logger = get_logger("align")

#: Query residues × the species' residues at most this: every query is aligned with every protein,
#: no k-mer index or prefilter (the index costs seconds and ~1 GB to build, and its prefilter ~0.15 s
#: per search once built; Smith–Waterman runs ~10⁹ cells per 0.1 s on one core). A query against
#: a small proteome (the demo's) is then answered without building an index at all; one against
#: human (11 M residues) still goes through it.
ALL_PAIRS_CELLS = 2_000_000_000


def search_sequences(
    atlas: Atlas,
    queries: Sequence[tuple[str, str]],
    species: str,
    *,
    threads: int | None = None,
    sensitivity: float = AlignParams.sensitivity,
    max_evalue: float = AlignParams.max_evalue,
    max_genes: int | None = None,
) -> pa.Table:
    """Genes of `species` whose proteins align with each (label, sequence) query (`SEQUENCE_HITS` rows).

    `max_genes` keeps each query's best N genes (all hits below `max_evalue` by default). The
    species' search database and k-mer index are built on first use (about 1 GB per species);
    small searches align every pair instead (`ALL_PAIRS_CELLS`), which needs no index and finds
    every hit the prefilter would pass, with the same scores.
    """
    if not queries:
        raise Invalid("give at least one query sequence.", param="queries", value=[])
    check_number("sensitivity", sensitivity)
    check_number("max_evalue", max_evalue)
    if max_genes is not None:
        check_number("k", max_genes, param="max_genes")
    if threads is not None:
        check_number("threads", threads)
    cleaned = [(label, _clean(label, sequence)) for label, sequence in queries]
    database = open_database(atlas, species, threads=threads)
    every_pair = sum(len(sequence) for _, sequence in cleaned) * mmseqs.residues(database.db) <= ALL_PAIRS_CELLS
    target, load = (database.db, []) if every_pair else (_indexed(database, threads), ["--db-load-mode", "2"])
    with tempfile.TemporaryDirectory(prefix="orthovec-search-") as scratch:
        work = Path(scratch).resolve()
        names = [f"q{i}" for i in range(len(cleaned))]
        mmseqs.write_fasta(work / "queries.fasta", zip(names, (sequence for _, sequence in cleaned), strict=True))
        query = work / "queries"
        mmseqs.create_db(work / "queries.fasta", query, work)
        self_bits = mmseqs.self_hits(query, work, threads).select(pl.col("query"), pl.col("bits").alias("self_query"))
        if every_pair:
            candidates = mmseqs.every_pair(mmseqs.lookup(query), mmseqs.lookup(database.db))
            prefilter = mmseqs.write_candidates(candidates, work / "pref", work)
        else:
            prefilter = work / "pref"
            mmseqs.prefilter(
                query,
                target,
                prefilter,
                work,
                threads,
                sensitivity=sensitivity,
                max_seqs=300,
                step="prefilter",
                extra=load,
            )
        mmseqs.align(
            query, target, prefilter, work / "aln", work, threads, max_evalue=max_evalue, step="align", extra=load
        )
        hits = mmseqs.read_hits(query, database.db, work / "aln", work, threads)
    labels = pl.DataFrame(
        {"query": names, "query_label": [label for label, _ in cleaned], "query_index": range(len(names))}
    )
    return _gene_hits(hits, self_bits, labels, database, species_proteins(atlas, species), max_genes)


def _clean(label: str, raw: str) -> str:
    """Upper case, no whitespace or trailing stops; anything but letters is refused (MMseqs2 reads letters)."""
    sequence = "".join(str(raw).split()).upper().rstrip("*")
    if not sequence or not sequence.isascii() or not sequence.isalpha():
        raise Invalid(
            f"query {label!r}: expected a protein sequence of amino-acid letters, got {str(raw)[:40]!r}.",
            param="queries",
        )
    return sequence


def _indexed(database: SearchDatabase, threads: int | None) -> Path:
    """The target MMseqs2 reads: the k-mer index when there is (or can be) one, else the database."""
    if database.index is None:
        try:
            build_index(database, threads)
        except UserError as err:  # a read-only atlas: slower, still right
            logger.warning("%s; searching without the k-mer index (slower)", err)
            return database.db
    return database.index or database.db


def _gene_hits(
    hits: pl.DataFrame,
    self_bits: pl.DataFrame,
    labels: pl.DataFrame,
    database: SearchDatabase,
    proteins: pa.Table,
    max_genes: int | None,
) -> pa.Table:
    """Protein hits → one row per (query, gene) from its best protein, ranked by bits."""
    targets = pl.from_arrow(proteins.select(["species", "seq_hash", "protein_id", "gene_id", "gene_symbol"]))
    assert isinstance(targets, pl.DataFrame)
    target_self = pl.DataFrame(
        list(database.self_scores().items()), schema={"target": pl.String, "self_target": pl.Float32}, orient="row"
    )
    rows = (
        hits.join(self_bits, on="query", how="left")
        .join(target_self, on="target", how="left")
        .with_columns(pl.col("self_query", "self_target").fill_null(pl.col("bits")))
        .join(targets, left_on="target", right_on="seq_hash")
        .join(labels, on="query")
        .sort(["query_index", "gene_id", "bits", "evalue", "protein_id"], descending=[False, False, True, False, False])
        .unique(["query_index", "gene_id"], keep="first", maintain_order=True)
        .sort(["query_index", "bits", "gene_id"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("query_index"))
    )
    if max_genes is not None:
        rows = rows.filter(pl.col("rank") <= max_genes)
    table = rows.select(
        pl.col("query_label").alias("query"),
        "query_index",
        "species",
        "gene_id",
        "gene_symbol",
        "protein_id",
        "rank",
        "bits",
        "evalue",
        pl.col("fident").alias("identity"),
        pl.col("qcov").alias("coverage_query"),
        pl.col("tcov").alias("coverage_target"),
        (pl.col("bits") / pl.max_horizontal("self_query", "self_target")).alias("bsr"),
    ).to_arrow()
    return SEQUENCE_HITS.validate(table.cast(SEQUENCE_HITS.schema()), "sequence search")
