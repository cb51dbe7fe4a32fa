"""Isoforms → one vector per gene.

mean (default) averages every isoform's embedding; max takes the element-wise maximum; canonical
uses the isoform the header marks canonical (UniProt accession without `-N`, Ensembl_canonical)
and falls back to the longest, the usual proxy when no annotation is available.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orthovec.indexer.settings import Pooling
from orthovec.schemas.tables import genes_table


def pool_genes(
    proteins: pa.Table, protein_vectors: np.ndarray, pooling: Pooling, rows: np.ndarray | None = None
) -> pa.Table:
    """Gene vectors from per-protein vectors: protein i's vector is `protein_vectors[rows[i]]`.

    `rows` None means row i. With `rows`, identical sequences share one row of the distinct-sequence
    matrix, so no proteome-sized per-protein copy is made. Genes keep the order of their first
    protein in the file, so output is deterministic.
    """
    gene_ids = proteins.column("gene_id").to_pylist()
    order: dict[str, int] = {}
    gene_of_protein = np.fromiter((order.setdefault(g, len(order)) for g in gene_ids), np.int64, len(gene_ids))
    n_genes = len(order)
    # Stable sort groups each gene's proteins together, in file order within the gene.
    by_gene = np.argsort(gene_of_protein, kind="stable")
    starts = np.searchsorted(gene_of_protein[by_gene], np.arange(n_genes))
    sorted_vectors = protein_vectors[by_gene if rows is None else rows[by_gene]]
    counts = np.diff(np.append(starts, len(by_gene)))

    if pooling == "mean":
        gene_vectors = np.add.reduceat(sorted_vectors, starts, axis=0) / counts[:, None]
    elif pooling == "max":
        gene_vectors = np.maximum.reduceat(sorted_vectors, starts, axis=0)
    else:
        gene_vectors = sorted_vectors[starts + _canonical_offsets(proteins, by_gene, starts, counts)]

    first_row = by_gene[starts]
    protein_ids = proteins.column("protein_id").to_pylist()
    return genes_table(
        species=proteins.column("species").take(first_row).to_pylist(),
        gene_ids=list(order),
        vectors=gene_vectors,
        gene_symbols=proteins.column("gene_symbol").take(first_row).to_pylist(),
        taxids=proteins.column("taxid").take(first_row),
        n_proteins=counts.tolist(),
        protein_ids=[[protein_ids[i] for i in by_gene[s : s + c]] for s, c in zip(starts, counts, strict=True)],
    )


def _canonical_offsets(proteins: pa.Table, by_gene: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Within each gene's block: the first canonical isoform, else the longest (first on ties)."""
    canonical = pc.fill_null(proteins.column("is_canonical"), False).to_numpy(zero_copy_only=False)[by_gene]
    lengths = proteins.column("length").to_numpy()[by_gene]
    offsets = np.empty(len(starts), np.int64)
    for g, (start, count) in enumerate(zip(starts, counts, strict=True)):
        block = slice(start, start + count)
        flagged = np.flatnonzero(canonical[block])
        offsets[g] = flagged[0] if len(flagged) else int(np.argmax(lengths[block]))
    return offsets
