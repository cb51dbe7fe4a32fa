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

`groups` can also read the multi-species groups table of `orthovec map A B C`
(`groups__A__B__C.parquet`): its homology groups already span every species, so no reference is
needed to join them and all species share one group feature space directly.

`graph` carries expression across species through the weighted many-to-many homology graph (the
mapping rows that carry a relation, weighted by the mapping's score: the blast score ratio for
alignment evidence, the fused score for fused, Ensembl's identity for imports), as SAMap's
gene-graph projection does (`X_i @ G_ij` in its `core/projection.py`). The features are every
species' graph genes; a cell holds its own counts on its own species' genes and its counts
projected onto each other species' genes. Each gene's edge weights are normalised to sum to 1 so
a gene's counts are shared out among its homologs, never multiplied (a cell's projected library
size equals its own): with one-to-one edges only, a projected gene is exactly its ortholog's count.
Species other than the reference are projected onto each other through the reference.
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

Features = Literal["one2one", "groups", "graph"]
FEATURES: tuple[Features, ...] = ("one2one", "groups", "graph")


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
            f"species {', '.join(missing)} not in the mapping (it has {', '.join(sorted(names))}); name each "
            "species' data after a species of the mapping.",
            param="adatas",
        )
    rows = {other: _orient(mapping, reference, other) for other in others}
    unlinked = [other for other, r in rows.items() if r.is_empty()]
    if unlinked:
        raise NotFound(
            f"species are joined through the reference species '{reference}', but no mapping table links it to "
            f"{', '.join(unlinked)}. Add a mapping table for {', '.join(f'{reference}__{o}' for o in unlinked)}, "
            "or choose another reference species.",
            param="reference",
            value=reference,
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
    mapping: pa.Table | None,
    features: Features = "one2one",
    reference: str | None = None,
    groups_table: pa.Table | None = None,
) -> tuple[ad.AnnData, list[SpeciesGeneReport]]:
    """One AnnData of raw counts over shared features, `obs['species']` set, plus the gene report.

    `mapping` holds the pair rows; `groups_table` (HOMOLOGY_GROUPS, with `features='groups'` only)
    takes its place. Writes `var['gene_<species>']`, `var['score_<other>']` and `var['identity_<other>']`
    (best evidence of the feature's pair with the reference), `uns['orthovec']['features' | 'reference' |
    'species' | 'gene_report']`.
    """
    species = list(species_counts)
    if len(species) < 2:
        raise Invalid(f"Give at least two species to integrate (got {len(species)}: {', '.join(species)}).")
    reference = reference or species[0]
    if reference not in species_counts:
        raise NotFound("is not one of the species given.", param="reference", value=reference, choices=species)
    names = {s: c.gene_names for s, c in species_counts.items()}
    if groups_table is not None:
        if features != "groups":
            raise Invalid(
                "a multi-species homology-groups table only makes group features; use features='groups' with it.",
                param="features",
                value=features,
            )
        return _assemble(species_counts, features, reference, *_table_groups(groups_table, names))
    if mapping is None:
        raise Invalid("Give a mapping table (or a homology-groups table) to join the species through.")
    others = [s for s in species if s != reference]
    frame = pl.from_arrow(mapping)
    assert isinstance(frame, pl.DataFrame)
    pairs = _pair_rows(frame, reference, others)
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
    if features == "graph":
        members, var = _graph(pairs, reference)
    else:
        members, var = (_one2one if features == "one2one" else _groups)(pairs, reference)
    return _assemble(species_counts, features, reference, matched, mapped, members, var)


def _assemble(
    species_counts: dict[str, SpeciesCounts],
    features: Features,
    reference: str,
    matched: dict[str, dict[str, str]],
    mapped: dict[str, set[str]],
    members: dict[str, list[dict[str, float]]],
    var: pd.DataFrame,
) -> tuple[ad.AnnData, list[SpeciesGeneReport]]:
    """Each species' counts carried onto the features (`counts @ weights`), stacked, with the gene report."""
    species = list(species_counts)
    names = {s: c.gene_names for s, c in species_counts.items()}
    if var.empty:
        examples = {s: ", ".join(list(names[s][:3])) for s in species}
        raise NotFound(
            f"No shared genes between the data and the mapping ({features}) across {', '.join(species)}. Data "
            f"genes look like {examples}. Check the species names, var_key (the var column of gene names) "
            "or the mapping."
        )
    blocks, reports = [], []
    for s in species:
        data = species_counts[s]
        aggregation = _aggregation_matrix(names[s], members[s])
        blocks.append(ad.AnnData(X=(data.counts @ aggregation).astype(np.float32), obs=data.obs, var=var.copy()))
        used = {g for m in members[s] for g in m if m[g] > 0}
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


Members = dict[str, list[dict[str, float]]]
"""Per species, per feature: the species' genes that make it, each with its weight."""


def _one2one(pairs: dict[str, pl.DataFrame], reference: str) -> tuple[Members, pd.DataFrame]:
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
    members = {reference: [{g: 1.0} for g in kept]}
    for other, rows in partner.items():
        lookup = rows.select("data_a", "data_b", "score", "identity").to_pandas().set_index("data_a").loc[kept]
        members[other] = [{g: 1.0} for g in lookup["data_b"]]
        var[f"gene_{other}"] = lookup["data_b"].to_numpy()
        var[f"score_{other}"] = lookup["score"].to_numpy(dtype=np.float32, na_value=np.nan)
        var[f"identity_{other}"] = lookup["identity"].to_numpy(dtype=np.float32, na_value=np.nan)
    var.index = pd.Index(kept, name="feature")
    return members, var


def _groups(pairs: dict[str, pl.DataFrame], reference: str) -> tuple[Members, pd.DataFrame]:
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
    var = _group_var(complete, species, reference)
    for other, rows in edges.items():
        best = _evidence(rows, "data_a").to_pandas().set_index("data_a")
        var[f"score_{other}"] = [best["score"].reindex(m[reference]).max() for m in complete]
        var[f"identity_{other}"] = [best["identity"].reindex(m[reference]).max() for m in complete]
    return {s: [dict.fromkeys(m[s], 1.0) for m in complete] for s in species}, var


def _group_var(complete: list[dict[str, list[str]]], species: list[str], reference: str) -> pd.DataFrame:
    """`var` of group features: one per group, its member genes per species, named after the reference's."""
    var = pd.DataFrame({"group_id": np.arange(len(complete), dtype=np.int64)})
    for s in species:
        var[f"gene_{s}"] = [",".join(m[s]) for m in complete]
    var["n_genes"] = [sum(len(m[s]) for s in species) for m in complete]
    var.index = pd.Index(_unique(["|".join(sorted(m[reference])) for m in complete]), name="feature")
    return var


def _table_groups(
    table: pa.Table, names: dict[str, pd.Index]
) -> tuple[dict[str, dict[str, str]], dict[str, set[str]], Members, pd.DataFrame]:
    """Group features straight from a multi-species HOMOLOGY_GROUPS table (`orthovec map A B C`).

    Each species' genes are matched on IDs or symbols (whichever its var names overlap more), exactly
    then case-insensitively; a group is a feature when every species has at least one member measured.
    """
    species = list(names)
    held = [c for c in table.column_names if c not in ("group_id", "n_species") and not c.endswith("_symbols")]
    missing = [s for s in species if s not in held]
    if missing:
        raise NotFound(
            f"Species {', '.join(missing)} not in the homology-groups table (it has {', '.join(held)}); name each "
            "AnnData after a species of the table."
        )
    matched: dict[str, dict[str, str]] = {}
    mapped: dict[str, set[str]] = {}
    genes: dict[str, list[list[str]]] = {}
    for s in species:
        upper = {n.upper() for n in names[s]}
        columns = [c for c in (s, f"{s}_symbols") if c in table.column_names]

        def overlap(column: str, upper: set[str] = upper) -> int:
            return sum(str(g).upper() in upper for group in table[column].to_pylist() for g in group or ())

        column = max(columns, key=overlap)
        genes[s] = [list(group or ()) for group in table[column].to_pylist()]
        mapped[s] = {g for group in genes[s] for g in group}
        matched[s] = _match_genes(names[s], sorted(mapped[s]))
    complete, group_ids = [], []
    for index, group_id in enumerate(table["group_id"].to_pylist()):
        group = {s: list(dict.fromkeys(matched[s][g] for g in genes[s][index] if g in matched[s])) for s in species}
        if all(group.values()):
            complete.append(group)
            group_ids.append(group_id)
    var = _group_var(complete, species, species[0])
    var["group_id"] = np.asarray(group_ids, dtype=np.int64)
    for other in species[1:]:
        var[f"score_{other}"] = np.float32(np.nan)  # the groups table keeps no pair evidence
        var[f"identity_{other}"] = np.float32(np.nan)
    return matched, mapped, {s: [dict.fromkeys(m[s], 1.0) for m in complete] for s in species}, var


def _graph(pairs: dict[str, pl.DataFrame], reference: str) -> tuple[Members, pd.DataFrame]:
    """SAMap-style projection through the weighted homology graph; see the module docstring.

    P[s→t] is species s's graph genes × species t's, each row summing to 1; between two species
    that are not the reference it is P[s→reference] @ P[reference→t] (still rows summing to 1).
    """
    edges = {}
    for other, rows in pairs.items():
        graph = rows.filter(pl.col("group_id").is_not_null()).with_columns(
            pl.col("score").fill_null(1.0).cast(pl.Float64).alias("weight")
        )
        edges[other] = (
            graph.filter(pl.col("weight") > 0)
            .group_by("data_a", "data_b", maintain_order=True)
            .agg(pl.col("weight").max(), pl.col("score").max(), pl.col("identity").max())
        )
    species = [reference, *pairs]
    genes = {reference: list(dict.fromkeys(g for e in edges.values() for g in e["data_a"].to_list()))}
    genes |= {other: list(dict.fromkeys(e["data_b"].to_list())) for other, e in edges.items()}
    position = {s: {g: i for i, g in enumerate(genes[s])} for s in species}
    projection: dict[tuple[str, str], sp.csr_matrix] = {}
    for other, e in edges.items():
        weights = sp.csr_matrix(
            (
                e["weight"].to_numpy(),
                ([position[reference][g] for g in e["data_a"]], [position[other][g] for g in e["data_b"]]),
            ),
            shape=(len(genes[reference]), len(genes[other])),
        )
        projection[reference, other] = _rows_sum_to_one(weights)
        projection[other, reference] = _rows_sum_to_one(weights.T.tocsr())
    for s in pairs:
        for t in pairs:
            if s != t:
                projection[s, t] = (projection[s, reference] @ projection[reference, t]).tocsr()
    members: Members = {s: [] for s in species}
    for t in species:
        for s in species:
            if s == t:
                members[s] += [{g: 1.0} for g in genes[t]]
                continue
            columns = projection[s, t].tocsc()
            for f in range(len(genes[t])):
                cells = slice(columns.indptr[f], columns.indptr[f + 1])
                pairs_in = zip(columns.indices[cells], columns.data[cells], strict=True)
                members[s].append({genes[s][i]: float(w) for i, w in pairs_in})
    var = pd.DataFrame({"species_of_gene": [t for t in species for _ in genes[t]]})
    for s in species:  # own genes by name, other species' features by the homologs projected onto them
        var[f"gene_{s}"] = [",".join(m) for m in members[s]]
    for other, e in edges.items():
        evidence = e.to_pandas()
        score = np.full(len(var), np.nan, dtype=np.float32)
        identity = np.full(len(var), np.nan, dtype=np.float32)
        start_other = sum(len(genes[s]) for s in species[: species.index(other)])
        for side, start in (("data_a", 0), ("data_b", start_other)):
            best = evidence.groupby(side)[["score", "identity"]].max()
            names = genes[reference] if side == "data_a" else genes[other]
            score[start : start + len(names)] = best["score"].reindex(names).to_numpy(dtype=np.float32, na_value=np.nan)
            identity[start : start + len(names)] = (
                best["identity"].reindex(names).to_numpy(dtype=np.float32, na_value=np.nan)
            )
        var[f"score_{other}"] = score
        var[f"identity_{other}"] = identity
    var.index = pd.Index([f"{t}:{g}" for t in species for g in genes[t]], name="feature")
    return members, var


def _rows_sum_to_one(weights: sp.csr_matrix) -> sp.csr_matrix:
    """Each gene's edge weights shared out to sum to 1 (a gene's counts are split among its homologs)."""
    totals = np.asarray(weights.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ weights)


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


def _aggregation_matrix(var_names: pd.Index, members: list[dict[str, float]]) -> sp.csr_matrix:
    """(genes × features) weight matrix: counts @ it sums each feature's member genes, weighted."""
    position: dict[str, int] = {}
    for i, name in enumerate(var_names):
        position.setdefault(name, i)  # duplicate names: the first occurrence (inputs.species_counts warns)
    rows, cols, weights = [], [], []
    for feature, genes in enumerate(members):
        for gene, weight in genes.items():
            rows.append(position[gene])
            cols.append(feature)
            weights.append(weight)
    return sp.csr_matrix((np.asarray(weights, np.float32), (rows, cols)), shape=(len(var_names), len(members)))


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
