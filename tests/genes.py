"""Build GENES tables for tests from plain vectors (the indexer's output format)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from schemas.tables import GENES


def gene_table(
    species: str, vectors: np.ndarray, gene_ids: Sequence[str], symbols: Sequence[str | None] | None = None
) -> pa.Table:
    n, dim = vectors.shape
    symbols = list(symbols) if symbols is not None else list(gene_ids)
    table = pa.table(
        {
            "species": [species] * n,
            "gene_id": list(gene_ids),
            "gene_symbol": symbols,
            "taxid": pa.array([None] * n, pa.int64()),
            "n_proteins": pa.array([1] * n, pa.int32()),
            "protein_ids": [[f"{species}:{g}"] for g in gene_ids],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), dim),
        },
        schema=GENES.schema(dim),
    )
    return GENES.validate(table, "test")
