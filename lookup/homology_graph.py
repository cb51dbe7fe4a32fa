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
