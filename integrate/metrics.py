"""Integration metrics on the corrected embedding, from the field's implementations.

scib-metrics gives the silhouettes (label ASW rescaled to 0–1; species ASW as scIB's batch
silhouette, where 1 means species are mixed within each cell type), iLISI/cLISI (scaled 0–1) and
graph connectivity; ARI/NMI compare Leiden clusters to labels (scikit-learn, as scIB does);
label transfer is a kNN classifier trained on one species and scored on the other, over the cell
types both species have.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scib_metrics
from orthovec.schemas.errors import UserError
from scib_metrics.nearest_neighbors import NeighborsResults
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

N_NEIGHBOURS = 15


def _neighbours(x: np.ndarray, k: int) -> NeighborsResults:
    distances, indices = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return NeighborsResults(indices=indices[:, 1:], distances=distances[:, 1:])


def label_transfer(x: np.ndarray, species: np.ndarray, labels: np.ndarray, k: int = N_NEIGHBOURS) -> dict[str, float]:
    """Accuracy of kNN label transfer A→B (and back), on cell types present in both species."""
    names = list(pd.unique(species))
    result: dict[str, float] = {}
    for source in names:
        for target in names:
            if source == target:
                continue
            shared = set(labels[species == source]) & set(labels[species == target])
            train = (species == source) & np.isin(labels, list(shared))
            test = (species == target) & np.isin(labels, list(shared))
            if not train.any() or not test.any():
                continue
            model = KNeighborsClassifier(n_neighbors=min(k, int(train.sum()))).fit(x[train], labels[train])
            result[f"{source}->{target}"] = float((model.predict(x[test]) == labels[test]).mean())
    return result


def transfer_matrix(x: np.ndarray, species: np.ndarray, labels: np.ndarray, source: str, target: str) -> pd.DataFrame:
    """Cell type (target species) × transferred label: fraction of cells, for the agreement heatmap."""
    train, test = species == source, species == target
    model = KNeighborsClassifier(n_neighbors=min(N_NEIGHBOURS, int(train.sum()))).fit(x[train], labels[train])
    predicted = model.predict(x[test])
    return pd.crosstab(
        pd.Series(labels[test], name=f"{target} cell type"),
        pd.Series(predicted, name=f"from {source}"),
        normalize="index",
    )


def integration_metrics(shared: ad.AnnData, label_key: str) -> dict[str, object]:
    if label_key not in shared.obs:
        raise UserError(f"No obs column '{label_key}'; available: {', '.join(map(str, shared.obs.columns))}.")
    x = np.asarray(shared.obsm[shared.uns["orthovec"]["embedding"]], dtype=np.float32)
    labels = shared.obs[label_key].astype(str).to_numpy()
    species = shared.obs["species"].astype(str).to_numpy()
    neighbours = _neighbours(x, 90)  # LISI needs ~3 × perplexity (30) neighbours
    knn15 = _neighbours(x, N_NEIGHBOURS)
    cross = (species[knn15.indices] != species[:, None]).mean()
    leiden = shared.obs["leiden"].astype(str).to_numpy()
    return {
        "celltype_asw": float(scib_metrics.silhouette_label(x, labels)),
        "species_asw": float(scib_metrics.silhouette_batch(x, labels, species)),
        "ilisi": float(scib_metrics.ilisi_knn(neighbours, species)),
        "clisi": float(scib_metrics.clisi_knn(neighbours, labels)),
        "ari": float(adjusted_rand_score(labels, leiden)),
        "nmi": float(normalized_mutual_info_score(labels, leiden)),
        "graph_connectivity": float(scib_metrics.graph_connectivity(knn15, labels)),
        "label_transfer": label_transfer(x, species, labels),
        "cross_species_neighbour_fraction": float(cross),
        "n_cells": int(shared.n_obs),
        "n_features": int(shared.n_vars),
    }
