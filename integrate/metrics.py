"""Integration metrics on the corrected embedding, from the field's implementations.

scib-metrics gives the silhouettes (label ASW rescaled to 0–1; species ASW as scIB's batch
silhouette, where 1 means species are mixed within each cell type), iLISI/cLISI (scaled 0–1) and
graph connectivity; ARI/NMI compare Leiden clusters to labels (scikit-learn, as scIB does);
label transfer is a kNN classifier trained on one species and scored on the other, over the cell
types both species have.

ALCS (BENGAL, Song et al. 2023: accuracy loss of cell-type self-projection) catches
over-correction that mixing scores reward: per species, cross-validated kNN accuracy of its own
cell types in its own PCA (before integration) minus the same in the integrated embedding,
clipped at 0 and averaged over species (0 = no cell-type structure lost). `overall` is scIB's
weighting, 0.6 × biology conservation + 0.4 × species mixing, over the unscaled metrics computed
here: biology = mean(cell-type ASW, ARI, NMI, cLISI), mixing = mean(species ASW, iLISI, graph
connectivity). scIB min-max scales each metric across the methods of one study; a single run
cannot, so compare `overall` only between runs of this code.

The raw cross-species neighbour fraction mixes two effects: species kept apart, and cell types
that exist in one species only (Baron's human acinar cells can have no mouse neighbour). So
mixing is also read against composition (`composition_mixing`): for each cell of a type that
every species has, the share of its neighbours from other species that perfect mixing would give
is the other species' share of that type; observed over expected, per type, averaged over types
weighted by their cells, is the fraction of the possible mixing reached (1 = as mixed as the
composition allows). `cross_species_neighbour_ceiling` is the raw fraction perfect mixing within
every shared type would give, the most the raw figure can reach on this composition.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scib_metrics
from scib_metrics.nearest_neighbors import NeighborsResults
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from orthovec.schemas.errors import NotFound

N_NEIGHBOURS = 15
BIOLOGY = ("celltype_asw", "ari", "nmi", "clisi")
MIXING = ("species_asw", "ilisi", "graph_connectivity")
#: Cell types with fewer cells are left out of self-projection (5-fold cross-validation needs 5 per class).
MIN_CELLS_SELF_PROJECTION = 5


def _neighbours(x: np.ndarray, k: int) -> NeighborsResults:
    """Each cell's k nearest other cells (fewer when there are not k others)."""
    k = min(k, len(x) - 1)
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


def self_projection(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Cross-validated kNN accuracy of predicting a species' own cell types from its cells' coordinates."""
    types, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, types[counts >= MIN_CELLS_SELF_PROJECTION])
    if len(np.unique(labels[keep])) < 2:
        return float("nan")
    folds = StratifiedKFold(n_splits=MIN_CELLS_SELF_PROJECTION, shuffle=True, random_state=seed)
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=N_NEIGHBOURS), x[keep], labels[keep], cv=folds)
    return float((predicted == labels[keep]).mean())


def alcs(shared: ad.AnnData, x: np.ndarray, labels: np.ndarray, species: np.ndarray) -> dict[str, float]:
    """Per species: self-projection accuracy in its own PCA (log data, shared HVGs) minus in `x`, clipped at 0."""
    n_comps = shared.obsm["X_pca"].shape[1]
    loss: dict[str, float] = {}
    for name in pd.unique(species):
        cells = species == name
        own = shared[cells, shared.var["highly_variable"]].copy()
        before = sc.pp.pca(own.X, n_comps=min(n_comps, own.n_obs - 1, own.n_vars - 1), random_state=0)
        accuracy_before = self_projection(np.asarray(before), labels[cells])
        accuracy_after = self_projection(x[cells], labels[cells])
        loss[str(name)] = max(0.0, accuracy_before - accuracy_after)
    return loss


def composition_mixing(neighbours: np.ndarray, species: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """Cross-species neighbours against what this composition allows; see the module docstring.

    `neighbours` holds each cell's k neighbour indices (self excluded). For cell i of species s and
    type t, perfect mixing gives a cross-species share of (n_t - n_ts) / (n_t - 1), the other
    species' share of the other cells of its type.
    """
    frame = pd.DataFrame({"species": species, "label": labels})
    by_type = frame.groupby("label", observed=True)["species"]
    n_species = frame["species"].nunique()
    shared_types = [t for t, members in by_type if members.nunique() == n_species]
    cross = (species[neighbours] != species[:, None]).mean(axis=1)
    type_size = frame["label"].map(frame["label"].value_counts()).to_numpy()
    own_size = frame.groupby(["label", "species"], observed=True)["label"].transform("size").to_numpy()
    in_shared = np.isin(labels, shared_types)
    expected = np.where(in_shared, (type_size - own_size) / np.maximum(type_size - 1, 1), 0.0)
    per_type: dict[str, dict[str, float]] = {}
    for cell_type in shared_types:
        cells = labels == cell_type
        per_type[str(cell_type)] = {
            "observed": float(cross[cells].mean()),
            "expected": float(expected[cells].mean()),
            "fraction_of_possible": float(cross[cells].mean() / expected[cells].mean()),
            "n_cells": int(cells.sum()),
        }
    weights = np.array([v["n_cells"] for v in per_type.values()], dtype=float)
    ratios = np.array([v["fraction_of_possible"] for v in per_type.values()])
    return {
        "mixing_of_possible": float(np.average(ratios, weights=weights)) if len(ratios) else float("nan"),
        "cross_species_neighbour_ceiling": float(expected.mean()),
        "cross_species_neighbour_fraction_shared_types": float(cross[in_shared].mean()) if in_shared.any() else 0.0,
        "mixing_per_cell_type": per_type,
    }


def integration_metrics(shared: ad.AnnData, label_key: str) -> dict[str, object]:
    if label_key not in shared.obs:
        raise NotFound(f"No obs column '{label_key}'; available: {', '.join(map(str, shared.obs.columns))}.")
    x = np.asarray(shared.obsm[shared.uns["orthovec"]["embedding"]], dtype=np.float32)
    labels = shared.obs[label_key].astype(str).to_numpy()
    species = shared.obs["species"].astype(str).to_numpy()
    neighbours = _neighbours(x, 90)  # LISI needs ~3 × perplexity (30) neighbours
    knn15 = _neighbours(x, N_NEIGHBOURS)
    cross = (species[knn15.indices] != species[:, None]).mean()
    composition = composition_mixing(knn15.indices, species, labels)
    leiden = shared.obs["leiden"].astype(str).to_numpy()
    scores = {
        "celltype_asw": float(scib_metrics.silhouette_label(x, labels)),
        "species_asw": float(scib_metrics.silhouette_batch(x, labels, species)),
        "ilisi": float(scib_metrics.ilisi_knn(neighbours, species)),
        "clisi": float(scib_metrics.clisi_knn(neighbours, labels)),
        "ari": float(adjusted_rand_score(labels, leiden)),
        "nmi": float(normalized_mutual_info_score(labels, leiden)),
        "graph_connectivity": float(scib_metrics.graph_connectivity(knn15, labels)),
    }
    per_species_loss = alcs(shared, x, labels, species)
    biology = float(np.mean([scores[k] for k in BIOLOGY]))
    mixing = float(np.mean([scores[k] for k in MIXING]))
    metrics: dict[str, object] = {
        **scores,
        "label_transfer": label_transfer(x, species, labels),
        "cross_species_neighbour_fraction": float(cross),
        **composition,
        "n_cells": int(shared.n_obs),
        "n_features": int(shared.n_vars),
        "alcs": float(np.nanmean(list(per_species_loss.values()))),
        "alcs_per_species": per_species_loss,
        "overall": 0.6 * biology + 0.4 * mixing,
        "biology_conservation": biology,
        "species_mixing": mixing,
    }
    return metrics
