"""Per-species AnnData + mapping tables → one shared feature space, with every lost gene counted.

`one2one` keeps one feature per one-to-one pair (named after the reference species' gene, with
each species' own gene in `var['gene_<species>']`); `groups` sums, per species, the counts of all
member genes of each homology group, so paralogs (one2many, many2many) contribute instead of
being discarded. Gene names are matched exactly first, then case-insensitively (human TP53 vs
mouse Trp53 conventions), and the report says which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import scipy.sparse as sp
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import MAPPING

Features = Literal["one2one", "groups"]


@dataclass
class SpeciesGeneReport:
    """How one species' genes met the mapping: nothing leaves without being counted here."""

    species: str
    genes_in_data: int
    genes_matched: int
    matched_case_insensitively: int
    genes_in_features: int
    expressed_genes: int
    expressed_genes_lost: int
    mapped_features_absent_from_data: int
    examples_lost: list[str] = field(default_factory=list)
    examples_absent: list[str] = field(default_factory=list)

    def line(self) -> str:
        lost = ", ".join(self.examples_lost[:5]) or "-"
        return (
            f"{self.species}: {self.genes_in_data:,} genes in data, {self.genes_matched:,} matched to the "
            f"mapping ({self.matched_case_insensitively:,} case-insensitively), {self.genes_in_features:,} in "
            f"shared features; {self.expressed_genes_lost:,} of {self.expressed_genes:,} expressed genes lost "
            f"(e.g. {lost}); {self.mapped_features_absent_from_data:,} mapped genes absent from the data"
        )


def symbol_mapping(adatas: dict[str, ad.AnnData]) -> pa.Table:
    """The naive baseline: genes with the same upper-cased symbol are one-to-one orthologs."""
    if len(adatas) != 2:
        raise UserError("Symbol matching pairs exactly two species.")
    (species_a, a), (species_b, b) = adatas.items()
    upper_b: dict[str, str] = {}
    for name in b.var_names:
        upper_b.setdefault(name.upper(), name)
    rows = [(g, upper_b[g.upper()]) for g in dict.fromkeys(a.var_names) if g.upper() in upper_b]
    n = len(rows)
    table = pa.table(
        {
            "species_a": [species_a] * n,
            "gene_id_a": [r[0] for r in rows],
            "gene_symbol_a": [r[0] for r in rows],
            "species_b": [species_b] * n,
            "gene_id_b": [r[1] for r in rows],
            "gene_symbol_b": [r[1] for r in rows],
            "score": pa.nulls(n, pa.float32()),
            "rank_ab": pa.nulls(n, pa.int32()),
            "rank_ba": pa.nulls(n, pa.int32()),
            "is_rbh": pa.nulls(n, pa.bool_()),
            "relation": ["one2one"] * n,
            "group_id": pa.array(range(n), pa.int64()),
            "source": ["symbols:upper"] * n,
        }
    )
    return MAPPING.validate(table, "symbol mapping")


def _orient(mapping: pl.DataFrame, species: list[str]) -> pl.DataFrame:
    """Rows as (reference species, other species), whichever way the file was written."""
    names = set(mapping["species_a"].unique()) | set(mapping["species_b"].unique())
    missing = [s for s in species if s not in names]
    if missing:
        raise UserError(
            f"Species {', '.join(missing)} not in the mapping (it has {', '.join(sorted(names))}); name each "
            "--adata after a species of the mapping (SPECIES=PATH)."
        )
    a, b = species
    forward = mapping.filter((pl.col("species_a") == a) & (pl.col("species_b") == b))
    backward = mapping.filter((pl.col("species_a") == b) & (pl.col("species_b") == a))
    swap = {c: c[:-2] + ("_b" if c.endswith("_a") else "_a") for c in mapping.columns if c[-2:] in ("_a", "_b")}
    backward = backward.rename(swap).with_columns(
        pl.col("relation").replace({"one2many": "many2one", "many2one": "one2many"})
    )
    return pl.concat([forward, backward.select(forward.columns)])


def _match_genes(var_names: pd.Index, candidates: list[str]) -> tuple[dict[str, str], int]:
    """mapping gene name → data gene name: exact, else case-insensitive; count of the latter."""
    exact = set(var_names)
    upper: dict[str, str] = {}
    for name in var_names:
        upper.setdefault(name.upper(), name)
    found: dict[str, str] = {}
    folded = 0
    for gene in candidates:
        if gene in exact:
            found[gene] = gene
        elif gene.upper() in upper:
            found[gene] = upper[gene.upper()]
            folded += 1
    return found, folded


def _gene_column(mapping: pl.DataFrame, side: str, var_names: pd.Index) -> str:
    """Match on symbols or IDs, whichever the data's var names overlap more."""
    upper = {n.upper() for n in var_names}

    def hits(column: str) -> int:
        return sum(str(v).upper() in upper for v in mapping[column].drop_nulls().unique().to_list())

    return max((f"gene_symbol_{side}", f"gene_id_{side}"), key=hits)


def build_shared(
    adatas: dict[str, ad.AnnData],
    mapping: pa.Table,
    features: Features = "one2one",
    var_key: str | None = None,
) -> tuple[ad.AnnData, list[SpeciesGeneReport]]:
    """One AnnData of raw counts over shared features, `obs['species']` set, plus the gene report."""
    species = list(adatas)
    if len(species) != 2:
        raise UserError(f"Give two species to integrate (got {len(species)}: {', '.join(species)}).")
    reference, other = species
    frame = pl.from_arrow(mapping)
    assert isinstance(frame, pl.DataFrame)
    rows = _orient(frame, species)
    names = {s: pd.Index(a.var[var_key].astype(str)) if var_key else a.var_names for s, a in adatas.items()}
    column = {s: _gene_column(rows, side, names[s]) for s, side in ((reference, "a"), (other, "b"))}
    matched: dict[str, dict[str, str]] = {}
    folded: dict[str, int] = {}
    for s in species:
        matched[s], folded[s] = _match_genes(names[s], rows[column[s]].drop_nulls().unique().to_list())
    rows = rows.with_columns(
        pl.col(column[reference]).replace_strict(matched[reference], default=None).alias("data_a"),
        pl.col(column[other]).replace_strict(matched[other], default=None).alias("data_b"),
    )
    if features == "one2one":
        used = rows.filter(
            (pl.col("relation") == "one2one") & pl.col("data_a").is_not_null() & pl.col("data_b").is_not_null()
        )
        used = used.unique(subset=["data_a"], keep="first").unique(subset=["data_b"], keep="first")
        feature_names = used["data_a"].to_list()
        members = {reference: [[g] for g in used["data_a"]], other: [[g] for g in used["data_b"]]}
        var = pd.DataFrame({f"gene_{reference}": used["data_a"].to_list(), f"gene_{other}": used["data_b"].to_list()})
    else:
        grouped = rows.filter(
            pl.col("group_id").is_not_null() & pl.col("data_a").is_not_null() & pl.col("data_b").is_not_null()
        )
        grouped = grouped.group_by("group_id", maintain_order=True).agg(
            pl.col("data_a").unique(maintain_order=True), pl.col("data_b").unique(maintain_order=True)
        )
        members = {reference: grouped["data_a"].to_list(), other: grouped["data_b"].to_list()}
        feature_names = ["|".join(sorted(a)) for a in members[reference]]
        var = pd.DataFrame(
            {
                "group_id": grouped["group_id"].to_list(),
                f"gene_{reference}": [",".join(m) for m in members[reference]],
                f"gene_{other}": [",".join(m) for m in members[other]],
                "n_genes": [len(a) + len(b) for a, b in zip(members[reference], members[other], strict=True)],
            }
        )
    if not feature_names:
        examples = {s: ", ".join(list(names[s][:3])) for s in species}
        mapped = {s: ", ".join(map(str, rows[column[s]].head(3).to_list())) for s in species}
        raise UserError(
            f"No shared genes between the data and the mapping ({features}). Data genes look like "
            f"{examples}; mapping genes look like {mapped}. Check species order, --var-key, or the mapping."
        )
    var.index = pd.Index(_unique(feature_names), name="feature")

    blocks, reports = [], []
    for s in species:
        data = adatas[s]
        counts = sp.csr_matrix(data.X if data.raw is None else data.raw.X)
        aggregation = _aggregation_matrix(names[s], members[s])
        blocks.append(ad.AnnData(X=(counts @ aggregation).astype(np.float32), obs=data.obs.copy(), var=var.copy()))
        reports.append(
            _report(
                s,
                names[s],
                counts,
                matched[s],
                folded[s],
                {g for m in members[s] for g in m},
                rows,
                column[s],
            )
        )
    shared = ad.concat(blocks, label="species", keys=species, index_unique="-", merge="first")
    shared.var = var
    shared.obs["species"] = pd.Categorical(shared.obs["species"], categories=species)
    shared.uns["orthovec"] = {
        "features": features,
        "gene_report": _report_uns(reports),
        "reference": reference,
    }
    return shared, reports


def _report_uns(reports: list[SpeciesGeneReport]) -> dict[str, dict[str, object]]:
    """h5ad-storable form: keyed by species, string lists as arrays."""
    return {
        r.species: {k: np.asarray(v, dtype=str) if isinstance(v, list) else v for k, v in asdict(r).items()}
        for r in reports
    }


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        result.append(name if count == 0 else f"{name}-{count}")
        seen[name] = count + 1
    return result


def _aggregation_matrix(var_names: pd.Index, members: list[list[str]]) -> sp.csr_matrix:
    """(genes × features) 0/1 matrix: counts @ it sums each feature's member genes."""
    position = {name: i for i, name in enumerate(var_names)}
    rows, cols = [], []
    for feature, genes in enumerate(members):
        for gene in genes:
            rows.append(position[gene])
            cols.append(feature)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(var_names), len(members)))


def _report(
    species: str,
    var_names: pd.Index,
    counts: sp.csr_matrix,
    matched: dict[str, str],
    folded: int,
    used: set[str],
    rows: pl.DataFrame,
    column: str,
) -> SpeciesGeneReport:
    expressed = np.asarray(counts.sum(axis=0)).ravel() > 0
    lost = [g for g, e in zip(var_names, expressed, strict=True) if e and g not in used]
    absent = sorted(set(map(str, rows[column].drop_nulls().unique().to_list())) - set(matched))
    return SpeciesGeneReport(
        species=species,
        genes_in_data=len(var_names),
        genes_matched=len(set(matched.values())),
        matched_case_insensitively=folded,
        genes_in_features=len(used),
        expressed_genes=int(expressed.sum()),
        expressed_genes_lost=len(lost),
        mapped_features_absent_from_data=len(absent),
        examples_lost=lost[:10],
        examples_absent=absent[:10],
    )
