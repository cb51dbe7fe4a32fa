"""One-to-one gene pairs: global greedy (the literature's method) and optimal assignment.

Greedy: repeatedly take the highest-scoring pair whose two genes are both still free. The
published scripts do it on the dense matrix; here each A gene keeps a heap entry for its best
still-free B gene from its top-k list, and only when that list is used up is the gene's row
recomputed against the free B genes. The pairs are exactly those of the dense procedure.

Optimal: maximise the summed score of the pairs over the candidate graph (top-k edges), allowing
genes to stay unmatched, as a sparse minimum-weight full bipartite matching (LAPJVsp) on the
graph augmented with one "unmatched" partner per gene.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

RowScores = Callable[[int, np.ndarray], np.ndarray]
"""(row, candidate columns) -> scores of that A row against those B columns."""


def greedy_one2one(
    ranked_cols: np.ndarray,
    ranked_scores: np.ndarray,
    row_scores: RowScores,
    n_cols: int,
    *,
    ties_by_col_first: bool = False,
) -> list[tuple[int, int, float]]:
    """Exact dense greedy from per-row ranked candidates (best first); (row, col, score) list.

    Ties are broken by the smaller (row, col), or (col, row) with `ties_by_col_first`, which a
    caller that passes species B as the rows uses so that ties still go to the smaller (A, B) pair.
    """
    n_rows = len(ranked_cols)
    taken = np.zeros(n_cols, dtype=bool)
    lists: list[tuple[np.ndarray, np.ndarray]] = [(ranked_cols[i], ranked_scores[i]) for i in range(n_rows)]
    cursor = np.zeros(n_rows, dtype=np.int64)

    def entry(score: float, row: int, col: int) -> tuple[float, int, int, int, int]:
        return (-score, *((col, row) if ties_by_col_first else (row, col)), row, col)

    heap = [entry(float(ranked_scores[i, 0]), i, int(ranked_cols[i, 0])) for i in range(n_rows) if ranked_cols.shape[1]]
    heapq.heapify(heap)
    pairs: list[tuple[int, int, float]] = []
    while heap and len(pairs) < n_cols:
        negative, _, _, row, col = heapq.heappop(heap)
        if not taken[col]:
            taken[col] = True
            pairs.append((row, col, -negative))
            continue
        nxt = _next_free(row, lists, cursor, taken, row_scores)
        if nxt is not None:
            heapq.heappush(heap, entry(nxt[1], row, nxt[0]))
    return pairs


def _next_free(
    row: int,
    lists: list[tuple[np.ndarray, np.ndarray]],
    cursor: np.ndarray,
    taken: np.ndarray,
    row_scores: RowScores,
) -> tuple[int, float] | None:
    cols, scores = lists[row]
    position = cursor[row] + 1
    while position < len(cols) and taken[cols[position]]:
        position += 1
    if position < len(cols):
        cursor[row] = position
        return int(cols[position]), float(scores[position])
    free = np.flatnonzero(~taken)
    if not len(free):
        return None
    # The top-k list is used up: rank this row against every free column (rare, and one row only).
    fresh = row_scores(row, free)
    order = np.lexsort((free, -fresh))
    lists[row] = (free[order], fresh[order])
    cursor[row] = 0
    return int(free[order[0]]), float(fresh[order[0]])


def sparse_greedy(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Greedy one-to-one over a candidate graph: indices of the edges taken, best score first.

    The same procedure as `greedy_one2one`, for scores that exist only on candidate edges (an
    alignment has no score for pairs MMseqs2 did not report); ties go to the smaller (row, col).
    """
    order = np.lexsort((cols, rows, -scores))
    taken_rows: set[int] = set()
    taken_cols: set[int] = set()
    chosen = []
    for edge in order.tolist():
        row, col = int(rows[edge]), int(cols[edge])
        if row not in taken_rows and col not in taken_cols:
            taken_rows.add(row)
            taken_cols.add(col)
            chosen.append(edge)
    return np.array(chosen, dtype=np.int64)


def optimal_one2one(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Indices of the candidate edges in a maximum-total-score matching (positive scores only).

    Node layout: left = A genes then one dummy per B gene; right = B genes then one dummy per A
    gene. A real edge costs top - score, leaving a gene unmatched costs top / 2 on each side, and
    dummy pairs mirror real edges at ~0 cost, so a pair is used exactly when it adds score
    (`top`, at least 1, is above every score so that all costs stay positive).
    """
    keep = scores > 0
    rows, cols, scores = rows[keep], cols[keep], scores[keep]
    index = np.flatnonzero(keep)
    epsilon = 1e-9  # zero weights would read as missing edges
    top = max(1.0, float(scores.max(initial=0.0)) + epsilon)
    left = np.concatenate([rows, np.arange(n_rows), n_rows + cols])
    right = np.concatenate([cols, n_cols + np.arange(n_rows), n_cols + rows])
    weight = np.concatenate(
        [top - scores.astype(np.float64) + epsilon, np.full(n_rows, top / 2), np.full(len(rows), epsilon)]
    )
    # B genes unmatched: their dummy-left partner pairs with nothing else at cost top / 2.
    left = np.concatenate([left, n_rows + np.arange(n_cols)])
    right = np.concatenate([right, np.arange(n_cols)])
    weight = np.concatenate([weight, np.full(n_cols, top / 2)])
    size = n_rows + n_cols
    graph = sp.csr_matrix((weight, (left, right)), shape=(size, size))
    left_matched, right_matched = min_weight_full_bipartite_matching(graph)
    real = (left_matched < n_rows) & (right_matched < n_cols)
    chosen = left_matched[real].astype(np.int64) * n_cols + right_matched[real]
    return index[np.isin(rows.astype(np.int64) * n_cols + cols, chosen)]
