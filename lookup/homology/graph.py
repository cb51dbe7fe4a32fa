"""Relations and homology groups of a bipartite gene graph (A genes ↔ B genes).

Used for both embedding mappings and imported homology, so `relation` and `group_id` mean the
same thing whatever the source: a pair's relation comes from the two genes' degrees in the
graph (Ensembl's own definition of one2one / one2many / many2many), and a group is a connected
component, i.e. a set of genes related through any chain of homology (paralogs included).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def near_best(
    a: np.ndarray,
    b: np.ndarray,
    scores: np.ndarray,
    background_a: np.ndarray,
    background_b: np.ndarray,
    margin: float,
) -> np.ndarray:
    """Edges within `margin` of both genes' best, measured relative to each gene's background.

    An edge (a, b) is kept when score ≥ best_a − margin · (best_a − background_a) and likewise for
    b, where best is the gene's top score among the edges given and background what an unrelated
    gene scores against it (0 for alignment scores; the mean over the other proteome for
    embeddings). The rule is unchanged by any increasing affine rescaling of the scores, so
    `margin` = 0.1 means "within 10% of the way from chance to the best" for every model, metric
    and evidence source, where an absolute cosine margin would not.
    """
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    best_a = _group_max(a, scores)
    best_b = _group_max(b, scores)
    floor_a = best_a - margin * (best_a - background_a)
    floor_b = best_b - margin * (best_b - background_b)
    return (scores >= floor_a) & (scores >= floor_b)


def _group_max(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per edge, the maximum of `values` over the edges sharing its key."""
    _, inverse = np.unique(keys, return_inverse=True)
    best = np.full(inverse.max() + 1, -np.inf)
    np.maximum.at(best, inverse, values)
    return best[inverse]


def relations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Relation of each edge (a[i], b[i]) from A's and B's degrees; edges must be distinct."""
    _, a_inverse, a_counts = np.unique(a, return_inverse=True, return_counts=True)
    _, b_inverse, b_counts = np.unique(b, return_inverse=True, return_counts=True)
    a_many, b_many = a_counts[a_inverse] > 1, b_counts[b_inverse] > 1
    # a has several partners -> "one2many" from A's side; b has several -> "many2one".
    return np.select(
        [~a_many & ~b_many, a_many & ~b_many, ~a_many & b_many],
        ["one2one", "one2many", "many2one"],
        default="many2many",
    )


def groups(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component id of each edge; ids numbered by first appearance in edge order (stable)."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    a_codes, a_nodes = np.unique(a, return_inverse=True)
    b_codes, b_nodes = np.unique(b, return_inverse=True)
    n_a = len(a_codes)
    size = n_a + len(b_codes)
    graph = sp.coo_matrix((np.ones(len(a)), (a_nodes, n_a + b_nodes)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    edge_labels = labels[a_nodes]
    _, first = np.unique(edge_labels, return_index=True)
    renumber = np.empty(labels.max() + 1, dtype=np.int64)
    renumber[edge_labels[np.sort(first)]] = np.arange(len(first))
    return renumber[edge_labels]
