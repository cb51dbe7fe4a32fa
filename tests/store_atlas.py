"""An atlas of synthetic gene tables loaded into its embedded store through the real load path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orthovec.lookup.store import open_store
from orthovec.lookup.store.load import load_atlas
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.space import EmbeddingSpace
from orthovec.schemas.tables import GENES, genes_table, write_table

MODEL = "esm2_t6_8M_UR50D"
SPACE = EmbeddingSpace(MODEL, "ab" * 32, 6, "window", "mean", "fp32")


def write_gene_tables(root: Path, sizes: dict[str, int], dim: int = 24, seed: int = 0) -> Atlas:
    """Random gene vectors for each species, with the cases a store must get right planted in them.

    Genes 4, 5 and 7 have one vector (identical proteins do: a three-way tie), every tenth gene
    has no symbol, and genes 8 and 9 share one symbol in different cases.
    """
    atlas = Atlas(root)
    rng = np.random.default_rng(seed)
    for species, n in sizes.items():
        vectors = rng.normal(size=(n, dim)).astype(np.float32)
        vectors[5], vectors[7] = vectors[4], vectors[4]
        ids = [f"{species[:2].upper()}{i:05d}" for i in range(n)]
        symbols: list[str | None] = [f"{species[:2]}Sym{i}" if i % 10 else None for i in range(n)]
        symbols[8], symbols[9] = "Dup1", "DUP1"
        table = genes_table(species, ids, vectors, gene_symbols=symbols, taxids=[9606] * n)
        provenance = {"model": MODEL, "layer": SPACE.layer, "weights_sha256": SPACE.weights_sha256}
        write_table(table, atlas.genes(species, MODEL), GENES, provenance)
    return atlas


def loaded_atlas(root: Path, sizes: dict[str, int], dim: int = 24, seed: int = 0) -> Atlas:
    """`write_gene_tables`, then `load_atlas` into the embedded store (what `index` and `load` do)."""
    atlas = write_gene_tables(root, sizes, dim, seed)
    store = open_store(atlas)
    try:
        load_atlas(atlas, store)
    finally:
        store.close()
    return atlas
