"""Build GENES tables for tests from plain vectors (the indexer's output format)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from orthovec.schemas.tables import genes_table


def gene_table(
    species: str, vectors: np.ndarray, gene_ids: Sequence[str], symbols: Sequence[str | None] | None = None
) -> pa.Table:
    return genes_table(species, gene_ids, vectors, gene_symbols=symbols)
