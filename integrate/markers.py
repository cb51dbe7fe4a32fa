"""Conserved marker genes and gene conservation: the biology of a shared feature space.

Markers are ranked within each species separately (scanpy's Wilcoxon `rank_genes_groups`, each
cell type against the rest of its own species), so neither species' depth or composition leaks
into the other's ranking; features join them through the mapping. A feature's `conserved_score`
for a cell type is its *lowest* Wilcoxon z-score over the species: high only when it marks the
type in every species.

Gene conservation sets a feature's sequence evidence (mapping score, identity where a source
measured it) beside its expression conservation: the Pearson correlation, across the cell types
both species have, of its mean log-normalised expression in each. Genes that kept their sequence
but changed their expression pattern (and the reverse) stand out.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import scanpy as sc

from orthovec.schemas.tables import CONSERVED_MARKERS, GENE_CONSERVATION

#: Markers kept per cell type (by conserved rank) in markers.parquet.
TOP_MARKERS = 100
#: Cell types with fewer cells in a species are not ranked (Wilcoxon on 1–2 cells is noise).
MIN_CELLS = 3


def _shared_types(shared: ad.AnnData, label_key: str, species: list[str]) -> list[str]:
    counts = pd.crosstab(shared.obs[label_key].astype(str), shared.obs["species"].astype(str))
    return [t for t in counts.index if all(counts.at[t, s] >= MIN_CELLS for s in species if s in counts.columns)]


def _gene_column(shared: ad.AnnData, species: str) -> pd.Series:
    return shared.var[f"gene_{species}"].astype(str)


def conserved_markers(shared: ad.AnnData, label_key: str, top: int = TOP_MARKERS) -> pa.Table:
    """Rows of the CONSERVED_MARKERS spec for every cell type that all species have (≥ MIN_CELLS each)."""
    species = [str(s) for s in shared.obs["species"].cat.categories]
    types = _shared_types(shared, label_key, species)
    if not types:
        return CONSERVED_MARKERS.validate(CONSERVED_MARKERS.schema().empty_table(), "conserved markers")
    per_species: dict[str, pd.DataFrame] = {}
    for name in species:
        cells = shared[shared.obs["species"] == name].copy()
        cells.obs[label_key] = cells.obs[label_key].astype(str).astype("category")
        sc.tl.rank_genes_groups(cells, label_key, groups=types, reference="rest", method="wilcoxon", use_raw=False)
        frame = sc.get.rank_genes_groups_df(cells, group=types)
        frame = frame.rename(
            columns={
                "group": "cell_type",
                "names": "feature",
                "scores": "score",
                "logfoldchanges": "log2_fold_change",
                "pvals_adj": "pval_adj",
            }
        )
        frame["rank"] = frame.groupby("cell_type", observed=True).cumcount().astype(np.int32) + 1
        frame["species"] = name
        frame["gene"] = _gene_column(shared, name).reindex(frame["feature"]).to_numpy()
        per_species[name] = frame
    joined = pd.concat(per_species.values(), ignore_index=True)
    conserved = joined.groupby(["cell_type", "feature"], observed=True)["score"].min().rename("conserved_score")
    conserved = conserved.reset_index().sort_values(["cell_type", "conserved_score"], ascending=[True, False])
    conserved["conserved_rank"] = conserved.groupby("cell_type", observed=True).cumcount().astype(np.int32) + 1
    conserved = conserved[conserved["conserved_rank"] <= top]
    rows = joined.merge(conserved, on=["cell_type", "feature"]).sort_values(["cell_type", "conserved_rank", "species"])
    columns = [f.name for f in CONSERVED_MARKERS.schema()]
    table = pa.Table.from_pandas(rows[columns].astype({"cell_type": str, "feature": str}), preserve_index=False)
    return CONSERVED_MARKERS.validate(table, "conserved markers")


def _mean_expression(shared: ad.AnnData, species: str, label_key: str, types: list[str]) -> np.ndarray:
    """(cell types, features) mean log-normalised expression of one species' cells."""
    means = []
    for cell_type in types:
        cells = ((shared.obs["species"] == species) & (shared.obs[label_key].astype(str) == cell_type)).to_numpy()
        means.append(np.asarray(shared.X[cells].mean(axis=0)).ravel())
    return np.vstack(means)


def _columnwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    denominator = np.sqrt((x**2).sum(axis=0) * (y**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y).sum(axis=0) / denominator, np.nan)


def gene_conservation(shared: ad.AnnData, label_key: str) -> pa.Table:
    """Rows of the GENE_CONSERVATION spec: one per feature and non-reference species."""
    reference = str(shared.uns["orthovec"]["reference"])
    frames = []
    for other in (str(s) for s in shared.obs["species"].cat.categories if s != reference):
        types = _shared_types(shared, label_key, [reference, other])
        ref_means = _mean_expression(shared, reference, label_key, types)
        other_means = _mean_expression(shared, other, label_key, types)
        correlation = _columnwise_pearson(ref_means, other_means) if len(types) >= 3 else np.full(shared.n_vars, np.nan)
        cells_ref = (shared.obs["species"] == reference).to_numpy()
        cells_other = (shared.obs["species"] == other).to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "feature": shared.var_names.astype(str),
                    "reference": reference,
                    "gene_reference": _gene_column(shared, reference).to_numpy(),
                    "species": other,
                    "gene": _gene_column(shared, other).to_numpy(),
                    "mapping_score": shared.var[f"score_{other}"].to_numpy(dtype=np.float32),
                    "identity": shared.var[f"identity_{other}"].to_numpy(dtype=np.float32),
                    "expression_correlation": correlation.astype(np.float32),
                    "n_cell_types": np.int32(len(types)),
                    "mean_expression_reference": np.asarray(shared.X[cells_ref].mean(axis=0)).ravel(),
                    "mean_expression": np.asarray(shared.X[cells_other].mean(axis=0)).ravel(),
                }
            )
        )
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
    return GENE_CONSERVATION.validate(table, "gene conservation")
