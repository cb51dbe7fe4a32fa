"""The reader that copies nothing: the embedded store's answers, computed from the atlas's gene tables.

A process that cannot own the Edge shard (a server holds it, the atlas is mounted read-only, the
disk has no room for Edge's write-ahead log) used to copy the whole shard into a temporary
directory, about a gigabyte per `query` at 1280 dimensions and 200k genes. The gene tables
(`ATLAS/species/<name>/genes/<model>.parquet`) hold the very vectors the store was loaded from,
and a load makes the store mirror them (`load.load_genes`). A species is a proteome, ~20k genes, so
an exact search over the searched species is one matrix product: it gives the embedded store's
exact-search answers (same genes, same order and scores to float rounding; genes with identical
vectors are ordered by point id, where Qdrant follows its internal order; see
tests/test_store_congruence.py) and writes nothing anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orthovec.core.locks import FileLock
from orthovec.lookup.store.base import StoredGene, embedding_matrix, gene_keys, point_id, vectors_in_order
from orthovec.lookup.store.edge import embedded_models, no_vectors, shard_exists
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Unavailable
from orthovec.schemas.space import space_of_genes
from orthovec.schemas.tables import GENES, read_table

#: What a gene's payload is made of; `protein_ids` (a list per gene) is never needed to answer.
COLUMNS = ["species", "gene_id", "gene_symbol", "taxid", "n_proteins", "embedding"]

#: The most genes `find_genes` returns, as the engine's scroll page does.
FIND_LIMIT = 100


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, as Qdrant stores vectors for cosine distance (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@dataclass(frozen=True)
class SpeciesVectors:
    """One species' genes of one model, in point-id order (the engine's scroll order, and our tie order)."""

    genes: list[StoredGene]
    point_ids: list[str]
    unit: np.ndarray  # (genes, dim), rows of length 1
    by_key: dict[str, list[int]]  # gene_keys -> rows

    @classmethod
    def from_table(cls, model: str, table: pa.Table) -> SpeciesVectors:
        columns = {name: table.column(name).to_pylist() for name in COLUMNS[:-1]}
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        ids = [point_id(model, row["species"], row["gene_id"]) for row in rows]
        order = sorted(range(len(ids)), key=ids.__getitem__)
        genes = [StoredGene.from_payload({**rows[i], "model": model}) for i in order]
        by_key: dict[str, list[int]] = {}
        for row, gene in enumerate(genes):
            for key in gene_keys(gene.gene_id, gene.gene_symbol):
                by_key.setdefault(key, []).append(row)
        unit = unit_rows(embedding_matrix(table)[order])
        return cls(genes, [ids[i] for i in order], unit, by_key)


class GeneTableStore:
    """A read-only `GeneStore` over the gene tables of the models in the atlas's embedded store.

    It holds the store lock shared (as any reader does), so no writer changes the store while it
    answers; `why` says why the embedded store itself is not read, for messages. A species' table
    is read once, on the first question about it, and kept.
    """

    def __init__(self, atlas: Atlas, lock: FileLock | None = None, why: str = "") -> None:
        self.atlas = atlas
        self.why = why
        self._lock = lock
        self._species: dict[tuple[str, str], SpeciesVectors] = {}
        self._reading = threading.Lock()  # two threads of a server must not read one table twice

    def models(self) -> list[str]:
        return embedded_models(self.atlas)

    def _tables(self, model: str) -> dict[str, Path]:
        """Species -> gene table, for a model the embedded store holds (else the store's own NotFound)."""
        if model not in self.models() or not shard_exists(self.atlas.qdrant(model)):
            raise no_vectors(self.atlas, model)
        paths = {species: self.atlas.genes(species, model) for species in self.atlas.species_names()}
        return {species: path for species, path in paths.items() if path.is_file()}

    def _vectors(self, model: str, species: str) -> SpeciesVectors | None:
        path = self._tables(model).get(species)
        if path is None:
            return None
        with self._reading:
            if (model, species) not in self._species:
                self._species[model, species] = SpeciesVectors.from_table(model, read_table(path, GENES, COLUMNS))
        return self._species[model, species]

    def species_counts(self, model: str) -> dict[str, int]:
        counts = {species: pq.ParquetFile(path).metadata.num_rows for species, path in self._tables(model).items()}
        return {species: int(n) for species, n in counts.items() if n}

    def spaces(self, model: str) -> dict[str, list[str]]:
        held: dict[str, list[str]] = {}
        for species, path in sorted(self._tables(model).items()):
            space = space_of_genes(path)
            if space is not None:
                held.setdefault(space.id, []).append(species)
        return held

    def search(
        self, model: str, vectors: np.ndarray, species: str | None, k: int, exact: bool | None = None
    ) -> list[list[StoredGene]]:
        """Exact top `k` by cosine (always exact, whatever `exact` asks: it is at least as good)."""
        queries = unit_rows(np.atleast_2d(vectors).astype(np.float32))
        searched = [species] if species else sorted(self._tables(model))
        # (score, point id, gene) candidates of every query, gathered species by species
        found: list[list[tuple[float, str, StoredGene]]] = [[] for _ in queries]
        for name in searched:
            held = self._vectors(model, name)
            if held is None or not held.genes:
                continue
            scores = queries @ held.unit.T  # (queries, genes)
            for row, candidates in zip(scores, found, strict=True):
                for i in _top(row, k):
                    candidates.append((float(row[i]), held.point_ids[i], held.genes[i]))
        return [
            [replace(gene, score=score) for score, _, gene in sorted(candidates, key=lambda c: (-c[0], c[1]))[:k]]
            for candidates in found
        ]

    def find_genes(self, model: str, species: str, key: str) -> list[StoredGene]:
        held = self._vectors(model, species)
        if held is None:
            return []
        return [held.genes[i] for i in held.by_key.get(key.upper(), [])[:FIND_LIMIT]]

    def list_genes(self, model: str, species: str) -> list[StoredGene]:
        held = self._vectors(model, species)
        return list(held.genes) if held else []

    def gene_vectors(self, model: str, species: str, gene_ids: list[str]) -> np.ndarray:
        held = self._vectors(model, species)
        by_point = dict(zip(held.point_ids, held.unit, strict=True)) if held else {}
        return vectors_in_order(by_point, model, species, gene_ids, f"The gene tables of {self.atlas.root}")

    def _read_only(self) -> Unavailable:
        return Unavailable(
            f"The gene tables of {self.atlas.root} are read here in place of its embedded store ({self.why}); "
            "nothing can be written through them. Write when no server holds the store, on a writable atlas."
        )

    def upsert_genes(self, model: str, genes: pa.Table, space: str | None = None) -> int:
        raise self._read_only()

    def remove_missing(self, model: str, species: str, keep_gene_ids: Iterable[str]) -> int:
        raise self._read_only()

    def optimize(self, model: str) -> None:
        raise self._read_only()

    def close(self) -> None:
        self._species.clear()
        if self._lock is not None:
            self._lock.release()


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the `k` best scores, ties at the boundary included (the caller orders and cuts)."""
    if k >= scores.size:
        return np.arange(scores.size)
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    return np.flatnonzero(scores >= kth)
