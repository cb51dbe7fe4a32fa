"""External homology (Ensembl BioMart exports, plain gene-pair tables) in the mapping schema.

BioMart names its columns after the target species ("Mouse gene name", "%id. target Mouse gene
identical to query gene"), and R exports mangle them ("human.gene.name"); columns are recognised
by their normalised names, whichever species and whichever side the file was exported from.

Strategies (`--strategy`), as compared in the cross-species pLM literature:
- `all`: every homology row;
- `one2one`: Ensembl `ortholog_one2one` rows only;
- `hc-greedy`: high-confidence greedy one-to-one: pairs sorted by (orthology confidence,
  mean % identity), then accepted while both genes are still free;
- `fused`: Ensembl pairs scored by mean(identity / 100, embedding score) with the embedding score
  taken from an orthovec mapping of the same species (`--embedding-mapping`), then the same greedy
  by (confidence, fused score); pairs without an embedding score keep identity alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa

from orthovec.core.files import open_text
from orthovec.lookup.homology.graph import groups, relations
from orthovec.lookup.settings import Strategy
from orthovec.schemas.errors import Invalid
from orthovec.schemas.tables import MAPPING, read_table

ENSEMBL_RELATION = {
    "ortholog_one2one": "one2one",
    "ortholog_one2many": "one2many",
    "ortholog_many2many": "many2many",
}


def _ensembl_relation(rows: pl.DataFrame) -> pl.Series:
    """MAPPING relations of oriented BioMart rows.

    Ensembl's `ortholog_one2many` does not say which side is the "one": a query gene with several
    targets and a target gene with several queries carry the same label. The side is read from the
    rows themselves: the "many" side is the gene that appears in several one2many rows.
    """
    relation = rows["homology_type"].replace_strict(ENSEMBL_RELATION, default=None)
    one2many = relation == "one2many"
    if not one2many.any():
        return relation
    pairs = rows.filter(one2many)
    a_degree = pairs["gene_id_a"].value_counts().filter(pl.col("count") > 1)["gene_id_a"]
    b_degree = pairs["gene_id_b"].value_counts().filter(pl.col("count") > 1)["gene_id_b"]
    many2one = one2many & ~rows["gene_id_a"].is_in(a_degree.implode()) & rows["gene_id_b"].is_in(b_degree.implode())
    return pl.select(pl.when(many2one).then(pl.lit("many2one")).otherwise(relation)).to_series().alias("relation")


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


@dataclass(frozen=True)
class BiomartLayout:
    """Which column holds what, and the target species named in the headers."""

    query_name: str
    target_name: str
    target_label: str
    query_id: str | None = None
    target_id: str | None = None
    homology_type: str | None = None
    perc_target: str | None = None  # % of the target identical to the query
    perc_query: str | None = None  # % of the query identical to the target
    confidence: str | None = None
    goc: str | None = None


def detect_biomart(columns: list[str], source: str) -> BiomartLayout:
    normal = {_normalise(c): c for c in columns}
    # Ensembl names species by common names of one or more words ("Tropical clawed frog gene name").
    target = next((n for n in normal if re.fullmatch(r"[a-z0-9 ]+ gene name", n) and n != "gene name"), None)
    if "gene name" not in normal or target is None:
        raise Invalid(
            f"{source}: not a recognised Ensembl BioMart homology export. Expected columns 'Gene name' and "
            "'<Species> gene name' (plus optionally 'Gene stable ID', '<Species> homology type', "
            f"'%id. ...', '<Species> orthology confidence [0 low, 1 high]'); found: {', '.join(columns)}."
        )
    label = target.removesuffix(" gene name")
    species = re.escape(label)

    def find(pattern: str) -> str | None:
        return next((original for n, original in normal.items() if re.fullmatch(pattern, n)), None)

    return BiomartLayout(
        query_name=normal["gene name"],
        target_name=normal[target],
        target_label=label,
        query_id=find(r"gene stable id"),
        target_id=find(rf"{species} gene stable id"),
        homology_type=find(rf"{species} homology type"),
        perc_target=find(rf"id target {species} gene identical to query gene"),
        perc_query=find(rf"id query gene identical to target {species} gene"),
        confidence=find(rf"{species} orthology confidence 0 low 1 high"),
        goc=find(rf"{species} gene order conservation score"),
    )


def _read_delimited(path: Path) -> pl.DataFrame:
    with open_text(path) as handle:
        first = handle.readline()
    separator = "\t" if first.count("\t") > first.count(",") else ","
    try:
        return pl.read_csv(path, separator=separator, infer_schema_length=0, quote_char='"')
    except pl.exceptions.PolarsError as err:
        raise Invalid(
            f"{path}: could not be read as a {'TSV' if separator == chr(9) else 'CSV'} table ({err})."
        ) from err


#: BioMart names species by their Ensembl common name; users name them freely (`index --species`
#: suggests binomials). Each common name's binomial lets `--from mus_musculus` match "Mouse".
COMMON_NAMES = {
    "human": "homo_sapiens",
    "mouse": "mus_musculus",
    "rat": "rattus_norvegicus",
    "zebrafish": "danio_rerio",
    "tropical clawed frog": "xenopus_tropicalis",
    "chicken": "gallus_gallus",
    "pig": "sus_scrofa",
    "cow": "bos_taurus",
    "dog": "canis_lupus_familiaris",
    "macaque": "macaca_mulatta",
    "chimpanzee": "pan_troglodytes",
    "fruitfly": "drosophila_melanogaster",
    "caenorhabditis elegans": "caenorhabditis_elegans",
}


def _label_names(label: str) -> set[str]:
    """Every name a BioMart column label can go by: itself, its binomial, the binomial's BioMart
    dataset stem (`mmusculus`)."""
    common = " ".join(label.lower().replace("_", " ").split())
    binomial = COMMON_NAMES.get(common, common.replace(" ", "_"))
    genus, _, epithet = binomial.partition("_")
    return {common.replace(" ", "_"), binomial, f"{genus[:1]}{epithet}" if epithet else binomial}


def _species_matches(label: str, species: str) -> bool:
    return species.lower().replace(" ", "_").replace("-", "_") in _label_names(label)


def _biomart_swap(label: str, species_a: str, species_b: str, source: str) -> bool:
    """Whether the file's query side is our B, decided by its column names against species A and B."""
    is_a, is_b = _species_matches(label, species_a), _species_matches(label, species_b)
    if is_b and not is_a:
        return False
    if is_a and not is_b:
        return True
    names = " / ".join(sorted(_label_names(label)))
    raise Invalid(
        f"{source}: the columns name the target species '{label}' ({names}), which "
        + (f"matches both {species_a!r} and {species_b!r}" if is_a else f"is neither {species_a!r} nor {species_b!r}")
        + "; orthovec will not guess which side is which.",
        param="species_b",
        value=species_b,
        hint=f"Name the species as the file does (for example {label.replace(' ', '_')!r}), or import the file "
        "as gene pairs with its two gene columns named.",
    )


def import_biomart(path: Path, species_a: str, species_b: str) -> pa.Table:
    """All homology rows of a BioMart export, oriented A → B, in the MAPPING schema."""
    frame = _read_delimited(path)
    layout = detect_biomart(frame.columns, str(path))
    # The file's query side has the unprefixed columns; if its target is our A, swap sides.
    swap = _biomart_swap(layout.target_label, species_a, species_b, str(path))

    def column(name: str | None) -> pl.Expr:
        return pl.col(name) if name else pl.lit(None, dtype=pl.String)

    def number(name: str | None) -> pl.Expr:
        return pl.col(name).cast(pl.Float32, strict=False) if name else pl.lit(None, dtype=pl.Float32)

    query = {
        "gene_id": column(layout.query_id or layout.query_name),
        "gene_symbol": column(layout.query_name),
        "perc": number(layout.perc_query),
    }
    target = {
        "gene_id": column(layout.target_id or layout.target_name),
        "gene_symbol": column(layout.target_name),
        "perc": number(layout.perc_target),
    }
    a_side, b_side = (target, query) if swap else (query, target)
    rows = frame.select(
        a_side["gene_id"].alias("gene_id_a"),
        a_side["gene_symbol"].alias("gene_symbol_a"),
        b_side["gene_id"].alias("gene_id_b"),
        b_side["gene_symbol"].alias("gene_symbol_b"),
        column(layout.homology_type).alias("homology_type"),
        a_side["perc"].alias("perc_id_ab"),
        b_side["perc"].alias("perc_id_ba"),
        number(layout.confidence).cast(pl.Int8).alias("orthology_confidence"),
        number(layout.goc).alias("goc_score"),
    )
    has_target = pl.col("gene_id_b").is_not_null() & (pl.col("gene_id_b") != "") & pl.col("gene_id_a").is_not_null()
    rows = rows.filter(has_target & pl.col("homology_type").fill_null("ortholog").str.starts_with("ortholog"))
    rows = rows.unique(subset=["gene_id_a", "gene_id_b"], keep="first", maintain_order=True)
    rows = rows.with_columns(
        relation=_ensembl_relation(rows),
        score=((pl.col("perc_id_ab") + pl.col("perc_id_ba")) / 200).cast(pl.Float32),
    )
    if rows["relation"].null_count():
        # No homology type column: derive relations from the pairs themselves.
        rows = rows.with_columns(
            relation=pl.Series(relations(rows["gene_id_a"].to_numpy(), rows["gene_id_b"].to_numpy()))
        )
    return _to_mapping(rows, species_a, species_b, "ensembl")


def import_pairs(
    path: Path,
    species_a: str,
    species_b: str,
    col_a: str | None = None,
    col_b: str | None = None,
    col_score: str | None = None,
) -> pa.Table:
    """A CSV/TSV of gene pairs (first two columns unless named) with an optional score column."""
    frame = _read_delimited(path)
    if len(frame.columns) < 2:
        raise Invalid(f"{path}: expected at least two columns (gene A, gene B), found {frame.columns}.")
    for name in (col_a, col_b, col_score):
        if name and name not in frame.columns:
            raise Invalid(f"{path}: no column {name!r}; columns are {', '.join(frame.columns)}.")
    col_a, col_b = col_a or frame.columns[0], col_b or frame.columns[1]
    if col_score is None and len(frame.columns) > 2:
        third = frame[frame.columns[2]].cast(pl.Float32, strict=False)
        col_score = frame.columns[2] if third.null_count() < len(third) else None
    rows = frame.select(
        pl.col(col_a).alias("gene_id_a"),
        pl.col(col_b).alias("gene_id_b"),
        (pl.col(col_score).cast(pl.Float32, strict=False) if col_score else pl.lit(None, pl.Float32)).alias("score"),
    ).filter(pl.col("gene_id_a").is_not_null() & pl.col("gene_id_b").is_not_null())
    rows = rows.unique(subset=["gene_id_a", "gene_id_b"], keep="first", maintain_order=True)
    rows = rows.with_columns(
        gene_symbol_a=pl.col("gene_id_a"),
        gene_symbol_b=pl.col("gene_id_b"),
        relation=pl.Series(relations(rows["gene_id_a"].to_numpy(), rows["gene_id_b"].to_numpy()), dtype=pl.String),
    )
    return _to_mapping(rows, species_a, species_b, f"pairs:{Path(path).name}")


def _to_mapping(rows: pl.DataFrame, species_a: str, species_b: str, source: str) -> pa.Table:
    group_id = groups(rows["gene_id_a"].to_numpy(), rows["gene_id_b"].to_numpy())
    rows = rows.with_columns(
        species_a=pl.lit(species_a),
        species_b=pl.lit(species_b),
        rank_ab=pl.lit(None, pl.Int32),
        rank_ba=pl.lit(None, pl.Int32),
        is_rbh=pl.lit(None, pl.Boolean),
        group_id=pl.Series(group_id, dtype=pl.Int64),
        source=pl.lit(source),
    )
    leading = [f.name for f in MAPPING.required]
    ordered = rows.select(leading + [c for c in rows.columns if c not in leading])
    return MAPPING.validate(ordered.to_arrow(), source)


def _greedy(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Accept pairs in descending `keys` order while both genes are free."""
    ordered = rows.sort(keys, descending=True, nulls_last=True, maintain_order=True)
    used_a: set[str] = set()
    used_b: set[str] = set()
    keep = []
    for a, b in zip(ordered["gene_id_a"], ordered["gene_id_b"], strict=True):
        ok = a not in used_a and b not in used_b
        keep.append(ok)
        if ok:
            used_a.add(a)
            used_b.add(b)
    return ordered.filter(pl.Series(keep)).with_columns(relation=pl.lit("one2one"))


def _check_same_pair(imported: pl.DataFrame, embedded: pl.DataFrame, path: Path) -> None:
    """Refuse to fuse tables of different species, or of the same species in different gene spaces."""
    wanted = (imported["species_a"][0], imported["species_b"][0])
    found = tuple(sorted(set(zip(embedded["species_a"].to_list(), embedded["species_b"].to_list(), strict=True))))
    if found != (wanted,):
        described = ", ".join(f"{a} → {b}" for a, b in found) or "no rows"
        raise Invalid(
            f"{path}: maps {described}, but the homology being imported is {wanted[0]} → {wanted[1]}; give an "
            f"`orthovec map {wanted[0]} {wanted[1]}` table.",
            param="embedding_mapping",
            value=path,
        )
    for side in ("a", "b"):
        ours = set(imported[f"gene_symbol_{side}"].drop_nulls().str.to_uppercase().to_list())
        theirs = set(embedded[f"gene_symbol_{side}"].drop_nulls().str.to_uppercase().to_list())
        shared = len(ours & theirs)
        if shared < 0.1 * len(ours):
            raise Invalid(
                f"{path}: only {shared:,} of the {len(ours):,} {wanted[side == 'b']} gene symbols being imported "
                "appear in it; the two tables name genes differently (another gene-ID space or species). "
                "Map species indexed from proteomes whose headers carry the same gene symbols."
            )


def apply_strategy(mapping: pa.Table, strategy: Strategy, embedding_mapping: Path | None = None) -> pa.Table:
    rows = pl.from_arrow(mapping)
    assert isinstance(rows, pl.DataFrame)
    if strategy == "all":
        return mapping
    if strategy == "one2one":
        chosen = rows.filter(pl.col("relation") == "one2one")
    elif strategy == "hc-greedy":
        chosen = _greedy(rows, ["orthology_confidence", "score"])
    else:
        if embedding_mapping is None:
            raise Invalid(
                "fused needs an embedding mapping (an `orthovec map` table of the same species).",
                param="embedding_mapping",
            )
        mapping_table = read_table(embedding_mapping, MAPPING)
        # An `orthovec map --evidence fused` table keeps the embedding's own score in its own column.
        score = "embedding_score" if "embedding_score" in mapping_table.column_names else "score"
        embedded = pl.from_arrow(
            mapping_table.select(["species_a", "species_b", "gene_symbol_a", "gene_symbol_b", score])
        )
        assert isinstance(embedded, pl.DataFrame)
        _check_same_pair(rows, embedded, embedding_mapping)
        embedded = embedded.with_columns(
            pl.col("gene_symbol_a").str.to_uppercase().alias("_a"),
            pl.col("gene_symbol_b").str.to_uppercase().alias("_b"),
        ).rename({score: "embedding_score"} if score == "score" else {})
        joined = rows.with_columns(
            pl.col("gene_symbol_a").str.to_uppercase().alias("_a"),
            pl.col("gene_symbol_b").str.to_uppercase().alias("_b"),
        ).join(embedded.select(["_a", "_b", "embedding_score"]).unique(["_a", "_b"]), on=["_a", "_b"], how="left")
        fused = (
            pl.when(pl.col("embedding_score").is_null())
            .then(pl.col("score"))
            .otherwise((pl.col("score").fill_null(pl.col("embedding_score")) + pl.col("embedding_score")) / 2)
        )
        joined = joined.drop(["_a", "_b"]).with_columns(score=fused.cast(pl.Float32))
        chosen = _greedy(joined, ["orthology_confidence", "score"])
        if chosen["embedding_score"].null_count() == len(chosen):
            raise Invalid(f"{embedding_mapping}: no pair matches the imported homology by gene symbol.")
    group_id = groups(chosen["gene_id_a"].to_numpy(), chosen["gene_id_b"].to_numpy())
    chosen = chosen.with_columns(group_id=pl.Series(group_id, dtype=pl.Int64), source=pl.col("source") + f":{strategy}")
    return MAPPING.validate(chosen.to_arrow(), strategy)


def import_homology(
    path: Path,
    species_a: str,
    species_b: str,
    fmt: Literal["biomart", "pairs"],
    strategy: Strategy = "all",
    embedding_mapping: Path | None = None,
    **pair_columns: str | None,
) -> pa.Table:
    if species_a == species_b:
        raise Invalid(
            f"species_a and species_b are both '{species_a}': homology relates two different species.",
            param="species_b",
            value=species_b,
        )
    table = (
        import_biomart(path, species_a, species_b)
        if fmt == "biomart"
        else import_pairs(path, species_a, species_b, **pair_columns)
    )
    if table.num_rows == 0:
        raise Invalid(f"{path}: no homology pairs found.")
    if strategy in ("hc-greedy", "fused") and fmt != "biomart":
        raise Invalid(
            "needs Ensembl confidence and identity columns (a BioMart export).", param="strategy", value=strategy
        )
    return apply_strategy(table, strategy, embedding_mapping)
