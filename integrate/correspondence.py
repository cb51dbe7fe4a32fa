"""Which cell types correspond across species, from cross-species neighbours in the integrated space.

SAMap's mapping-score idea on orthovec's embedding: for species A and B, each cell's k nearest
neighbours among the other species' cells vote for their cell types. `fraction_a_to_b` is the share
of type-a cells' B-neighbours that are type b, `fraction_b_to_a` the reverse, and `score` their mean,
so a pair scores high only when the two types point at each other. Cell counts travel with every
row (and onto the heatmap's labels) because a 3-cell type's fractions are far noisier than a
500-cell type's.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.neighbors import NearestNeighbors

from orthovec.schemas.tables import CELLTYPE_CORRESPONDENCE

N_NEIGHBOURS = 15


def _votes(x_from: np.ndarray, x_to: np.ndarray, labels_to: np.ndarray, k: int) -> np.ndarray:
    """(cells of the first species, k) labels of their nearest cells of the second species."""
    neighbours = NearestNeighbors(n_neighbors=min(k, len(x_to))).fit(x_to).kneighbors(x_from, return_distance=False)
    return labels_to[neighbours]


def _fractions(labels_from: np.ndarray, votes: np.ndarray, types_to: list[str]) -> pd.DataFrame:
    """type of the first species × type of the second: mean share of neighbour votes."""
    frame = pd.DataFrame({"cell_type": np.repeat(labels_from, votes.shape[1]), "vote": votes.ravel()})
    table = pd.crosstab(frame["cell_type"], frame["vote"], normalize="index")
    return table.reindex(columns=types_to, fill_value=0.0)


def correspondence(shared: ad.AnnData, label_key: str, k: int = N_NEIGHBOURS) -> pa.Table:
    """One row per (species A type, species B type) for every species pair, in the CELLTYPE_CORRESPONDENCE spec."""
    x = np.asarray(shared.obsm[shared.uns["orthovec"]["embedding"]], dtype=np.float32)
    species = shared.obs["species"].astype(str).to_numpy()
    labels = shared.obs[label_key].astype(str).to_numpy()
    names = list(dict.fromkeys(species))
    frames = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            in_a, in_b = species == a, species == b
            types_a, counts_a = np.unique(labels[in_a], return_counts=True)
            types_b, counts_b = np.unique(labels[in_b], return_counts=True)
            a_to_b = _fractions(labels[in_a], _votes(x[in_a], x[in_b], labels[in_b], k), list(types_b))
            b_to_a = _fractions(labels[in_b], _votes(x[in_b], x[in_a], labels[in_a], k), list(types_a))
            forward = a_to_b.reindex(index=types_a, fill_value=0.0).to_numpy()
            backward = b_to_a.reindex(index=types_b, fill_value=0.0).to_numpy().T
            score = (forward + backward) / 2
            best_b, best_a = score.argmax(axis=1), score.argmax(axis=0)
            rows_a, rows_b = np.meshgrid(np.arange(len(types_a)), np.arange(len(types_b)), indexing="ij")
            frames.append(
                pd.DataFrame(
                    {
                        "species_a": a,
                        "cell_type_a": types_a[rows_a.ravel()],
                        "n_cells_a": counts_a[rows_a.ravel()].astype(np.int32),
                        "species_b": b,
                        "cell_type_b": types_b[rows_b.ravel()],
                        "n_cells_b": counts_b[rows_b.ravel()].astype(np.int32),
                        "fraction_a_to_b": forward.ravel().astype(np.float32),
                        "fraction_b_to_a": backward.ravel().astype(np.float32),
                        "score": score.ravel().astype(np.float32),
                        "is_mutual_best": (best_b[rows_a] == rows_b).ravel() & (best_a[rows_b] == rows_a).ravel(),
                    }
                )
            )
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
    return CELLTYPE_CORRESPONDENCE.validate(table, "cell-type correspondence")
