"""Isoform pooling: one vector per gene, by mean, max or the canonical isoform."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from orthovec.indexer.pool import pool_genes
from orthovec.schemas.tables import GENES


def _proteins(rows: list[tuple[str, str, int, bool | None]]) -> pa.Table:
    """rows: (protein_id, gene_id, length, is_canonical)."""
    return pa.table(
        {
            "species": ["human"] * len(rows),
            "protein_id": [r[0] for r in rows],
            "gene_id": [r[1] for r in rows],
            "gene_symbol": [r[1].lower() for r in rows],
            "taxid": pa.array([9606] * len(rows), pa.int64()),
            "length": pa.array([r[2] for r in rows], pa.int32()),
            "is_canonical": pa.array([r[3] for r in rows], pa.bool_()),
        }
    )


# P1, P3 are isoforms of gene A (interleaved with gene B in the file); C has one protein.
PROTEINS = _proteins(
    [
        ("P1", "A", 100, False),
        ("P2", "B", 50, None),
        ("P3", "A", 300, True),
        ("P4", "C", 10, None),
        ("P5", "B", 70, None),
    ]
)
VECTORS = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [5.0, 5.0], [0.0, 4.0]], dtype=np.float32)


def _by_gene(genes: pa.Table) -> dict[str, list[float]]:
    return dict(zip(genes.column("gene_id").to_pylist(), genes.column("embedding").to_pylist(), strict=True))


def test_mean_pooling_averages_isoforms_and_keeps_file_order() -> None:
    genes = pool_genes(PROTEINS, VECTORS, "mean")
    GENES.validate(genes, "pooled")
    assert genes.column("gene_id").to_pylist() == ["A", "B", "C"]
    assert genes.column("n_proteins").to_pylist() == [2, 2, 1]
    assert genes.column("protein_ids").to_pylist() == [["P1", "P3"], ["P2", "P5"], ["P4"]]
    assert _by_gene(genes) == {"A": [2.0, 2.0], "B": [0.0, 3.0], "C": [5.0, 5.0]}


def test_max_pooling_takes_the_elementwise_maximum() -> None:
    assert _by_gene(pool_genes(PROTEINS, VECTORS, "max")) == {
        "A": [3.0, 4.0],
        "B": [0.0, 4.0],
        "C": [5.0, 5.0],
    }


@pytest.mark.parametrize(
    ("canonical_flags", "expected_a"),
    [
        ([False, None, True, None, None], [3.0, 4.0]),  # the flagged isoform P3
        ([True, None, False, None, None], [1.0, 0.0]),  # flag wins over length
        ([None, None, None, None, None], [3.0, 4.0]),  # no annotation: the longest (P3, 300 aa)
    ],
)
def test_canonical_pooling_uses_the_flag_else_the_longest(canonical_flags: list, expected_a: list) -> None:
    proteins = PROTEINS.set_column(
        PROTEINS.column_names.index("is_canonical"), "is_canonical", pa.array(canonical_flags, pa.bool_())
    )
    genes = _by_gene(pool_genes(proteins, VECTORS, "canonical"))
    assert genes["A"] == expected_a
    assert genes["B"] == [0.0, 4.0]  # longest of P2 (50) and P5 (70)
