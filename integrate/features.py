"""Per-species raw counts + mapping tables → one shared feature space, with every lost gene counted.

Species are joined through one reference species (the first `--adata` unless `reference` is
given): every other species needs mapping rows with the reference, and a feature exists only
when every species has a gene for it. `one2one` keeps one feature per reference gene that has a
one-to-one partner in every other species (named after the reference gene, each species' own gene
in `var['gene_<species>']`); `groups` joins all species' genes linked by mapping rows into
connected components (homology groups across species) and sums, per species, the counts of a
group's member genes, so paralogs (one2many, many2many) contribute instead of being discarded.
Gene names are matched exactly first, then case-insensitively (human TP53 vs mouse Trp53
conventions), and the report says which. The strongest evidence behind each feature (mapping
score; Ensembl or alignment identity) is kept in `var` for the gene conservation table.
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
from scipy.sparse.csgraph import connected_components

from orthovec.integrate.inputs import SpeciesCounts
from orthovec.schemas.errors import Invalid, NotFound

Features = Literal["one2one", "groups"]


@dataclass
class SpeciesGeneReport:
    """How one species' genes met the mapping: nothing leaves without being counted here."""

    species: str
    counts_from: str
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
            f"{self.species} (counts from {self.counts_from}): {self.genes_in_data:,} genes in data, "
            f"{self.genes_matched:,} matched to the mapping ({self.matched_case_insensitively:,} case-insensitively), "
            f"{self.genes_in_features:,} in shared features; {self.expressed_genes_lost:,} of "
            f"{self.expressed_genes:,} expressed genes lost (e.g. {lost}); "
            f"{self.mapped_features_absent_from_data:,} mapped genes absent from the data"
        )


def _orient(mapping: pl.DataFrame, reference: str, other: str) -> pl.DataFrame:
    """Rows between the reference and `other`, as (reference, other), whichever way the file was written."""
    forward = mapping.filter((pl.col("species_a") == reference) & (pl.col("species_b") == other))
    backward = mapping.filter((pl.col("species_a") == other) & (pl.col("species_b") == reference))
    swap = {c: c[:-2] + ("_b" if c.endswith("_a") else "_a") for c in mapping.columns if c[-2:] in ("_a", "_b")}
    swap |= {"perc_id_ab": "perc_id_ba", "perc_id_ba": "perc_id_ab"} if "perc_id_ab" in mapping.columns else {}
    backward = backward.rename(swap).with_columns(
        pl.col("relation").replace({"one2many": "many2one", "many2one": "one2many"})
    )
    # One-sided columns (`margin_a`) become the other side's (`margin_b`); the other direction's rows get nulls there.
    return pl.concat([forward, backward], how="diagonal_relaxed")


def _pair_rows(mapping: pl.DataFrame, reference: str, others: list[str]) -> dict[str, pl.DataFrame]:
    """Each other species' rows with the reference; a clear error for a species or pair the tables lack."""
    names = set(mapping["species_a"].unique()) | set(mapping["species_b"].unique())
    missing = [s for s in [reference, *others] if s not in names]
    if missing:
        raise NotFound(
            f"Species {', '.join(missing)} not in the mapping (it has {', '.join(sorted(names))}); name each "
            "--adata after a species of the mapping (SPECIES=PATH)."
        )
    rows = {other: _orient(mapping, reference, other) for other in others}
    unlinked = [other for other, r in rows.items() if r.is_empty()]
    if unlinked:
        raise NotFound(
            f"Species are joined through the reference species '{reference}', but no mapping table links it to "
            f"{', '.join(unlinked)}. Add a --mapping for {', '.join(f'{reference}__{o}' for o in unlinked)}, or "
            "choose another --reference."
        )
    return rows


def _match_genes(var_names: pd.Index, candidates: list[str]) -> dict[str, str]:
    """mapping gene name → data gene name: exact, else case-insensitive."""
    exact = set(var_names)
    upper: dict[str, str] = {}
    for name in var_names:
        upper.setdefault(name.upper(), name)
    found: dict[str, str] = {}
    for gene in candidates:
        if gene in exact:
            found[gene] = gene
        elif gene.upper() in upper:
            found[gene] = upper[gene.upper()]
    return found


def _gene_column(mapping: pl.DataFrame, side: str, var_names: pd.Index) -> str:
    """Match on symbols or IDs, whichever the data's var names overlap more."""
    upper = {n.upper() for n in var_names}

    def hits(column: str) -> int:
        return sum(str(v).upper() in upper for v in mapping[column].drop_nulls().unique().to_list())

    return max((f"gene_symbol_{side}", f"gene_id_{side}"), key=hits)


def _identity(rows: pl.DataFrame) -> pl.Expr:
    """Sequence identity (0–1) of a pair where a source measured it: MMseqs2 alignment, else Ensembl's two-way %."""
    measured = []
    if "alignment_identity" in rows.columns:
        measured.append(pl.col("alignment_identity"))
    if "perc_id_ab" in rows.columns:
        measured.append(pl.mean_horizontal("perc_id_ab", "perc_id_ba") / 100)
    return pl.coalesce(*measured, pl.lit(None)).cast(pl.Float32) if measured else pl.lit(None, dtype=pl.Float32)


def build_shared(
    species_counts: dict[str, SpeciesCounts],
    mapping: pa.Table,
    features: Features = "one2one",
    reference: str | None = None,
) -> tuple[ad.AnnData, list[SpeciesGeneReport]]:
    """One AnnData of raw counts over shared features, `obs['species']` set, plus the gene report.

    Writes `var['gene_<species>']`, `var['score_<other>']` and `var['identity_<other>']` (best evidence of the
    feature's pair with the reference), `uns['orthovec']['features' | 'reference' | 'species' | 'gene_report']`.
    """
    species = list(species_counts)
    if len(species) < 2:
        raise Invalid(f"Give at least two species to integrate (got {len(species)}: {', '.join(species)}).")
    reference = reference or species[0]
    if reference not in species_counts:
        raise NotFound(f"--reference {reference!r} is not one of the --adata species ({', '.join(species)}).")
    others = [s for s in species if s != reference]
    frame = pl.from_arrow(mapping)
    assert isinstance(frame, pl.DataFrame)
    pairs = _pair_rows(frame, reference, others)
    names = {s: c.gene_names for s, c in species_counts.items()}
    matched: dict[str, dict[str, str]] = {s: {} for s in species}
    mapped: dict[str, set[str]] = {s: set() for s in species}
    for other, rows in pairs.items():
        resolved = []
        for s, side in ((reference, "a"), (other, "b")):
            column = _gene_column(rows, side, names[s])
            candidates = rows[column].drop_nulls().unique().to_list()
            found = _match_genes(names[s], candidates)
            matched[s] |= found
            mapped[s] |= set(map(str, candidates))
            resolved.append(pl.col(column).replace_strict(found, default=None).alias(f"data_{side}"))
        pairs[other] = rows.with_columns(*resolved, _identity(rows).alias("identity")).filter(
            pl.col("data_a").is_not_null() & pl.col("data_b").is_not_null()
        )
    members, var = (_one2one if features == "one2one" else _groups)(pairs, reference)
    if var.empty:
        examples = {s: ", ".join(list(names[s][:3])) for s in species}
        raise NotFound(
            f"No shared genes between the data and the mapping ({features}) across {', '.join(species)}. Data "
            f"genes look like {examples}. Check the species names, --var-key, or the mapping."
        )
    blocks, reports = [], []
    for s in species:
        data = species_counts[s]
        aggregation = _aggregation_matrix(names[s], members[s])
        blocks.append(ad.AnnData(X=(data.counts @ aggregation).astype(np.float32), obs=data.obs, var=var.copy()))
        used = {g for m in members[s] for g in m}
        reports.append(_report(s, data, matched[s], used, mapped[s]))
    shared = ad.concat(blocks, label="species", keys=species, index_unique="-", merge="first")
    shared.X = sp.csr_matrix(shared.X)
    shared.var = var
    shared.obs["species"] = pd.Categorical(shared.obs["species"], categories=species)
    shared.uns["orthovec"] = {
        "features": features,
        "gene_report": _report_uns(reports),
        "reference": reference,
        "species": np.asarray(species, dtype=str),
    }
    return shared, reports


def _evidence(rows: pl.DataFrame, by: str) -> pl.DataFrame:
    return rows.group_by(by).agg(pl.col("score").max().alias("score"), pl.col("identity").max().alias("identity"))


def _one2one(pairs: dict[str, pl.DataFrame], reference: str) -> tuple[dict[str, list[list[str]]], pd.DataFrame]:
    """Reference genes with a one-to-one partner (first row wins) in every other species."""
    partner: dict[str, pl.DataFrame] = {}
    for other, rows in pairs.items():
        one2one = rows.filter(pl.col("relation") == "one2one")
        one2one = one2one.unique(subset=["data_a"], keep="first", maintain_order=True)
        partner[other] = one2one.unique(subset=["data_b"], keep="first", maintain_order=True)
    kept = list(dict.fromkeys(next(iter(partner.values()))["data_a"].to_list()))
    for rows in partner.values():
        present = set(rows["data_a"].to_list())
        kept = [g for g in kept if g in present]
    var = pd.DataFrame({f"gene_{reference}": kept})
    members = {reference: [[g] for g in kept]}
    for other, rows in partner.items():
        lookup = rows.select("data_a", "data_b", "score", "identity").to_pandas().set_index("data_a").loc[kept]
        members[other] = [[g] for g in lookup["data_b"]]
        var[f"gene_{other}"] = lookup["data_b"].to_numpy()
        var[f"score_{other}"] = lookup["score"].to_numpy(dtype=np.float32, na_value=np.nan)
        var[f"identity_{other}"] = lookup["identity"].to_numpy(dtype=np.float32, na_value=np.nan)
    var.index = pd.Index(kept, name="feature")
    return members, var


def _groups(pairs: dict[str, pl.DataFrame], reference: str) -> tuple[dict[str, list[list[str]]], pd.DataFrame]:
    """Connected components of all species' genes over the mapping rows that carry a homology group."""
    edges = {o: rows.filter(pl.col("group_id").is_not_null()) for o, rows in pairs.items()}
    node: dict[tuple[str, str], int] = {}
    heads, tails = [], []
    for other, rows in edges.items():
        for gene_a, gene_b in rows.select("data_a", "data_b").iter_rows():
            heads.append(node.setdefault((reference, gene_a), len(node)))
            tails.append(node.setdefault((other, gene_b), len(node)))
    graph = sp.coo_matrix((np.ones(len(heads)), (heads, tails)), shape=(len(node), len(node)))
    _, component = connected_components(graph, directed=False)
    species = [reference, *pairs]
    by_component: dict[int, dict[str, list[str]]] = {}
    for (s, gene), index in node.items():  # insertion order: components numbered by first appearance
        by_component.setdefault(int(component[index]), {k: [] for k in species})[s].append(gene)
    complete = [m for m in by_component.values() if all(m[s] for s in species)]
    members = {s: [m[s] for m in complete] for s in species}
    var = pd.DataFrame({"group_id": np.arange(len(complete), dtype=np.int64)})
    for s in species:
        var[f"gene_{s}"] = [",".join(m) for m in members[s]]
    var["n_genes"] = [sum(len(m[s]) for s in species) for m in complete]
    for other, rows in edges.items():
        best = _evidence(rows, "data_a").to_pandas().set_index("data_a")
        var[f"score_{other}"] = [best["score"].reindex(m).max() for m in members[reference]]
        var[f"identity_{other}"] = [best["identity"].reindex(m).max() for m in members[reference]]
    var.index = pd.Index(_unique(["|".join(sorted(m)) for m in members[reference]]), name="feature")
    return members, var


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
    position: dict[str, int] = {}
    for i, name in enumerate(var_names):
        position.setdefault(name, i)  # duplicate names: the first occurrence (inputs.species_counts warns)
    rows, cols = [], []
    for feature, genes in enumerate(members):
        for gene in genes:
            rows.append(position[gene])
            cols.append(feature)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(var_names), len(members)))


def _report(
    species: str, data: SpeciesCounts, matched: dict[str, str], used: set[str], mapped: set[str]
) -> SpeciesGeneReport:
    names = data.gene_names
    expressed = np.asarray(data.counts.sum(axis=0)).ravel() > 0
    first = ~names.duplicated()
    lost = [g for g, e, f in zip(names, expressed, first, strict=True) if e and (g not in used or not f)]
    absent = sorted(mapped - set(matched))
    return SpeciesGeneReport(
        species=species,
        counts_from=data.counts_from,
        genes_in_data=len(names),
        genes_matched=len(set(matched.values())),
        matched_case_insensitively=sum(name != gene for name, gene in matched.items()),
        genes_in_features=len(used),
        expressed_genes=int(expressed.sum()),
        expressed_genes_lost=len(lost),
        mapped_features_absent_from_data=len(absent),
        examples_lost=lost[:10],
        examples_absent=absent[:10],
    )
