"""orthovec's evidence in the files the field's integration tools already read.

- **SAMap** (`maps/<A><B>/<A>_to_<B>.txt` and `<B>_to_<A>.txt`): BLAST tabular (outfmt 6, 12 columns,
  tab-separated, no header). SAMap reads column 1 (query gene), 2 (subject gene), 11 (e-value, kept
  when ≤ its `eval_thr`, default 1e-6) and 12 (bit score, the edge weight, which it then divides by
  each gene's best), and prefixes gene names with the species id itself, so ids must not contain '_'.
  From orthovec alignments (`ATLAS/alignments/A__B.parquet`, MMseqs2): pident = identity × 100,
  length = 0 (not kept), e-value and bits as aligned, one line per search direction that found the pair.
  Without alignments, from the embedding mapping (`ATLAS/mappings/<model>/A__B.parquet`): each gene's
  top-k hits, pident = cosine × 100 (not an identity), e-value = 0 (every hit passes SAMap's filter;
  the score carries the evidence), bit score = cosine score; pairs with a score ≤ 0 are left out.
  Columns 4–10 (length, mismatches, gap opens, coordinates) are 0: SAMap does not read them.
- **SATURN**: a `torch.save`d dict of gene symbol → 1-D float32 tensor (the gene's protein embedding),
  the layout SATURN's `--embedding_path` loads; duplicate symbols keep the first gene.
- **BioMart**: an Ensembl BioMart homology CSV (`Gene stable ID`, `Gene name`, `<B> gene stable ID`,
  `<B> gene name`, `<B> homology type`, both `%id.` columns, `<B> orthology confidence [0 low, 1 high]`),
  the columns BENGAL and the literature's scripts read, from any orthovec mapping's homology graph
  (rows with a relation), plus `orthovec score` and `orthovec source`. `%id.` holds Ensembl's
  identities where the mapping was imported, else the MMseqs2 alignment identity × 100 (the same in
  both columns); the confidence column is Ensembl's and empty for orthovec's own mappings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from orthovec.core.files import atomic_write, check_output_apart
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, NotFound
from orthovec.schemas.pairs import read_alignment
from orthovec.schemas.tables import GENES, MAPPING, read_table

BLAST_COLUMNS = (
    "qseqid",
    "sseqid",
    "pident",
    "length",
    "mismatch",
    "gapopen",
    "qstart",
    "qend",
    "sstart",
    "send",
    "evalue",
    "bitscore",
)
#: A SAMap species id: it prefixes gene names (split at '_') and names the maps' folder and files,
#: so it is one file-name part of letters and digits (no '_', '/', '.', nothing to climb out of `out`).
SAMAP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
HOMOLOGY_TYPE = {
    "one2one": "ortholog_one2one",
    "one2many": "ortholog_one2many",
    "many2one": "ortholog_one2many",
    "many2many": "ortholog_many2many",
}


def _model(atlas: Atlas, species: str, model: str | None) -> str:
    models = atlas.models_for(species)
    if not models:
        raise NotFound(
            f"No gene vectors for species '{species}' in {atlas.root} (it holds: "
            f"{', '.join(atlas.species_names()) or 'nothing'}); run `orthovec index` first."
        )
    if model is None:
        if len(models) > 1:
            raise Invalid(f"{species} has vectors of several models; choose one.", param="model", choices=models)
        return models[0]
    if model not in models:
        raise NotFound(f"{species} has no vectors of this model.", param="model", value=model, choices=models)
    return model


def export_saturn(atlas: Atlas, species: str, out: Path, model: str | None = None) -> tuple[Path, int]:
    """SATURN's protein-embedding file for one species; returns the path and the number of genes written."""
    import torch

    genes = atlas.genes(species, _model(atlas, species, model))
    check_output_apart([out], [genes])
    table = read_table(genes, GENES)
    symbols = [s or g for s, g in zip(table["gene_symbol"].to_pylist(), table["gene_id"].to_pylist(), strict=True)]
    vectors = np.asarray(table["embedding"].combine_chunks().flatten(), dtype=np.float32).reshape(len(symbols), -1)
    embeddings: dict[str, torch.Tensor] = {}
    for symbol, vector in zip(symbols, vectors, strict=True):
        embeddings.setdefault(symbol, torch.from_numpy(vector.copy()))
    return atomic_write(out, lambda path: torch.save(embeddings, path)), len(embeddings)


def _blast_frame(rows: pl.DataFrame, query: str, subject: str, pident: str, evalue: str, bits: str) -> pd.DataFrame:
    frame = rows.select(
        pl.col(query).alias("qseqid"),
        pl.col(subject).alias("sseqid"),
        (pl.col(pident) * 100).round(2).alias("pident"),
        *(pl.lit(0).alias(c) for c in BLAST_COLUMNS[3:10]),
        pl.col(evalue).cast(pl.Float64).alias("evalue"),
        pl.col(bits).cast(pl.Float64).alias("bitscore"),
    )
    return frame.to_pandas()


def _samap_rows(atlas: Atlas, a: str, b: str, model: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str, Path]:
    """(A→B lines, B→A lines, which evidence, the table read) from alignments when they exist, else embedding hits."""
    alignment = read_alignment(atlas, a, b)
    if alignment is not None:
        rows = pl.from_arrow(alignment)
        assert isinstance(rows, pl.DataFrame)
        rows = rows.with_columns(
            pl.coalesce("gene_symbol_a", "gene_id_a").alias("name_a"),
            pl.coalesce("gene_symbol_b", "gene_id_b").alias("name_b"),
        )
        forward = _blast_frame(rows.filter(pl.col("hit_ab")), "name_a", "name_b", "identity", "evalue", "bits")
        backward = _blast_frame(rows.filter(pl.col("hit_ba")), "name_b", "name_a", "identity", "evalue", "bits")
        source = atlas.alignment(a, b) if atlas.alignment(a, b).is_file() else atlas.alignment(b, a)
        return forward, backward, f"alignments ({source.name})", source
    chosen = _model(atlas, a, model)
    path, flipped = atlas.mapping(chosen, a, b), False
    if not path.is_file():
        path, flipped = atlas.mapping(chosen, b, a), True
    if not path.is_file():
        raise NotFound(
            f"Neither alignments ({atlas.alignment(a, b)}) nor an embedding mapping ({atlas.mapping(chosen, a, b)}) "
            f"link {a} and {b}; run `orthovec align {a} {b}` or `orthovec map {a} {b}` first."
        )
    rows = pl.from_arrow(read_table(path, MAPPING))
    assert isinstance(rows, pl.DataFrame)
    side = {"a": "b", "b": "a"} if flipped else {"a": "a", "b": "b"}
    rows = rows.filter(pl.col("score") > 0).with_columns(
        pl.coalesce(f"gene_symbol_{side['a']}", f"gene_id_{side['a']}").alias("name_a"),
        pl.coalesce(f"gene_symbol_{side['b']}", f"gene_id_{side['b']}").alias("name_b"),
        pl.lit(0.0).alias("evalue"),
    )
    rank_a, rank_b = ("rank_ba", "rank_ab") if flipped else ("rank_ab", "rank_ba")
    forward = _blast_frame(rows.filter(pl.col(rank_a).is_not_null()), "name_a", "name_b", "score", "evalue", "score")
    backward = _blast_frame(rows.filter(pl.col(rank_b).is_not_null()), "name_b", "name_a", "score", "evalue", "score")
    return forward, backward, f"embedding mapping ({path.parent.name}/{path.name})", path


def samap_ids(species: tuple[str, str], ids: dict[str, str] | None) -> tuple[str, str]:
    """Each species' SAMap id (default: its name), checked as a file-name part SAMap can split on."""
    given = ids or {}
    unknown = sorted(set(given) - set(species))
    if unknown:
        raise Invalid(
            f"gives an id for {', '.join(unknown)}, which is not one of the species exported.",
            param="ids",
            value=",".join(f"{name}={given[name]}" for name in unknown),
            choices=species,
        )
    chosen = tuple(given.get(name, name) for name in species)
    for name, sid in zip(species, chosen, strict=True):
        if not SAMAP_ID.fullmatch(sid):
            raise Invalid(
                f"{name}'s SAMap id must be letters, digits and '-' only: SAMap splits gene names at '_' to find it, "
                "and it names the maps' folder and files. Give a short one (for example hs, mm).",
                param="ids",
                value=f"{name}={sid}",
            )
    return chosen[0], chosen[1]


def export_samap(
    atlas: Atlas, species: tuple[str, str], out: Path, ids: dict[str, str] | None = None, model: str | None = None
) -> tuple[list[tuple[Path, int]], str]:
    """SAMap's `maps/` directory for one species pair; returns the files written (with their line
    counts) and the evidence used."""
    a, b = species
    if a == b:
        raise Invalid("names the same species twice: SAMap maps link two different species.", param="species", value=a)
    id_a, id_b = samap_ids(species, ids)
    forward, backward, evidence, source = _samap_rows(atlas, a, b, model)
    directory = out / f"{id_a}{id_b}"
    targets = [(directory / f"{id_a}_to_{id_b}.txt", forward), (directory / f"{id_b}_to_{id_a}.txt", backward)]
    check_output_apart([path for path, _ in targets], [source])

    def writer(frame: pd.DataFrame) -> Callable[[Path], None]:
        return lambda path: frame.to_csv(path, sep="\t", header=False, index=False)

    return [(atomic_write(path, writer(frame)), len(frame)) for path, frame in targets], evidence


def export_biomart(mapping_path: Path, out: Path) -> tuple[Path, int]:
    """A BioMart-style homology CSV of a mapping's homology graph; returns the path and the rows written."""
    check_output_apart([out], [mapping_path])
    table = read_table(mapping_path, MAPPING)
    rows = pl.from_arrow(table)
    assert isinstance(rows, pl.DataFrame)
    rows = rows.filter(pl.col("relation").is_not_null())
    if rows.is_empty():
        raise NotFound(f"{mapping_path}: no rows with a homology relation (empty homology graph); nothing to export.")
    pairs = rows.select("species_a", "species_b").unique()
    if pairs.height > 1:
        raise Invalid(f"{mapping_path}: holds several species pairs ({pairs.rows()}); export one pair's table.")
    label = str(rows["species_b"][0]).replace("_", " ").capitalize()

    def optional(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name) if name in rows.columns else pl.lit(None, dtype=dtype)

    # Ensembl's two one-sided identities where imported; MMseqs2's (symmetric) identity for orthovec alignments.
    aligned = optional("alignment_identity", pl.Float32()) * 100
    identity_ba = pl.coalesce(optional("perc_id_ba", pl.Float32()), aligned)
    identity_ab = pl.coalesce(optional("perc_id_ab", pl.Float32()), aligned)

    target = f"{label} gene"
    frame = rows.select(
        pl.col("gene_id_a").alias("Gene stable ID"),
        pl.coalesce("gene_symbol_a", "gene_id_a").alias("Gene name"),
        pl.col("gene_id_b").alias(f"{label} gene stable ID"),
        pl.coalesce("gene_symbol_b", "gene_id_b").alias(f"{label} gene name"),
        pl.col("relation").replace_strict(HOMOLOGY_TYPE).alias(f"{label} homology type"),
        identity_ba.alias(f"%id. target {target} identical to query gene"),
        identity_ab.alias(f"%id. query gene identical to target {target}"),
        optional("orthology_confidence", pl.Int8()).alias(f"{label} orthology confidence [0 low, 1 high]"),
        pl.col("score").alias("orthovec score"),
        pl.col("source").alias("orthovec source"),
    )
    return atomic_write(out, lambda path: frame.write_csv(path)), frame.height
