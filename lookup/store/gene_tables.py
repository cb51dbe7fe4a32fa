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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orthovec.core.locks import FileLock
from orthovec.lookup.store.base import StoredGene, embedding_matrix, point_id, vectors_in_order
from orthovec.lookup.store.edge import embedded_models, no_vectors, shard_exists
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, Unavailable
from orthovec.schemas.space import space_of_genes
from orthovec.schemas.tables import GENES, read_table

#: A gene's payload; `protein_ids` (a list per gene) is never needed to answer, and the
#: `embedding` column, most of a table's bytes, is read apart and only when vectors are asked for.
PAYLOAD = ["species", "gene_id", "gene_symbol", "taxid", "n_proteins"]

#: The most genes `find_genes` returns, as the engine's scroll page does.
FIND_LIMIT = 100


def read_vectors(path: Path) -> np.ndarray:
    """A gene table's embedding column as a (genes, dim) float32 matrix.

    Read on one thread without pre-buffering: for this one column of one row group, pyarrow's
    threads have nothing to share out, and pre-buffering reads the whole column chunk into one
    more buffer before decoding it. Median of 6 reads of a 20k x 1280 table: 0.40 s this way,
    0.61 s with pyarrow's defaults (2 cores at load 13).
    """
    try:
        # A missing or mistyped column named as the schema check names it, not as pyarrow's field lookup does
        GENES.validate(pq.read_schema(path).empty_table(), str(path), ["embedding"])
        table = pq.read_table(path, columns=["embedding"], use_threads=False, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as err:
        raise Invalid(f"{path}: not a readable Parquet file ({err}).") from err
    return embedding_matrix(GENES.validate(table, str(path), ["embedding"]))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, as Qdrant stores vectors for cosine distance (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@dataclass
class SpeciesGenes:
    """One species' genes of one model, column by column in table order.

    A gene query touches a handful of a proteome's ~20k genes, so a gene becomes a `StoredGene`
    (and gets its point id, a uuid5) only when it is an answer: building all of them took longer
    than reading the table. Point ids still decide every order, as the engine's scroll does.
    """

    model: str
    path: Path
    columns: dict[str, list[Any]]
    keys: list[tuple[str, str | None]]  # per row: upper-cased gene ID and symbol, as `gene_keys` makes them
    matrix: np.ndarray | None = None  # (genes, dim) float32, as stored: read on the first search
    norms: np.ndarray | None = None  # row lengths (1 for a zero row, which stays zero as in Qdrant)

    @classmethod
    def read(cls, model: str, path: Path) -> SpeciesGenes:
        table = read_table(path, GENES, PAYLOAD)
        columns = {name: table.column(name).to_pylist() for name in PAYLOAD}
        ids, symbols = columns["gene_id"], columns["gene_symbol"]
        keys = [(g.upper(), s.upper() if s else None) for g, s in zip(ids, symbols, strict=True)]
        return cls(model, path, columns, keys)

    def __len__(self) -> int:
        return len(self.keys)

    def gene(self, row: int, score: float | None = None) -> StoredGene:
        payload = {name: values[row] for name, values in self.columns.items()} | {"model": self.model}
        return StoredGene.from_payload(payload) if score is None else StoredGene.from_payload(payload, score)

    def point_id(self, row: int) -> str:
        return point_id(self.model, self.columns["species"][row], self.columns["gene_id"][row])

    def in_point_order(self, rows: Iterable[int]) -> list[int]:
        return sorted(rows, key=self.point_id)

    def load_vectors(self) -> None:
        if self.matrix is None:
            self.matrix = read_vectors(self.path)
            norms = np.sqrt(np.einsum("ij,ij->i", self.matrix, self.matrix))
            self.norms = np.where(norms == 0, 1, norms).astype(np.float32)

    def cosines(self, unit_queries: np.ndarray) -> np.ndarray:
        """(queries, genes) cosines: raw rows times unit queries, over the row lengths (the table
        is never scaled: that would copy it)."""
        assert self.matrix is not None and self.norms is not None, "load_vectors first"
        return (unit_queries @ self.matrix.T) / self.norms

    def unit_vector(self, row: int) -> np.ndarray:
        assert self.matrix is not None and self.norms is not None, "load_vectors first"
        return self.matrix[row] / self.norms[row]


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
        self._species: dict[tuple[str, str], SpeciesGenes] = {}
        self._reading = threading.Lock()  # two threads of a server must not read one table twice

    def models(self) -> list[str]:
        return embedded_models(self.atlas)

    def _tables(self, model: str) -> dict[str, Path]:
        """Species -> gene table, for a model the embedded store holds (else the store's own NotFound)."""
        if model not in self.models() or not shard_exists(self.atlas.qdrant(model)):
            raise no_vectors(self.atlas, model)
        paths = {species: self.atlas.genes(species, model) for species in self.atlas.species_names()}
        return {species: path for species, path in paths.items() if path.is_file()}

    def _genes(self, model: str, species: str, vectors: bool = False) -> SpeciesGenes | None:
        """The species' genes, read on the first question about them and kept (vectors too, when asked)."""
        path = self._tables(model).get(species)
        if path is None:
            return None
        with self._reading:
            held = self._species.get((model, species))
            if held is None:
                held = self._species[model, species] = SpeciesGenes.read(model, path)
            if vectors:
                held.load_vectors()
        return held

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
        # (score, point id, species' genes, row) candidates of every query, gathered species by species
        found: list[list[tuple[float, str, SpeciesGenes, int]]] = [[] for _ in queries]
        for name in searched:
            held = self._genes(model, name, vectors=True)
            if held is None or not len(held):
                continue
            for scores, candidates in zip(held.cosines(queries), found, strict=True):
                for i in _top(scores, k):
                    candidates.append((float(scores[i]), held.point_id(int(i)), held, int(i)))
        return [
            [held.gene(row, score) for score, _, held, row in sorted(candidates, key=lambda c: (-c[0], c[1]))[:k]]
            for candidates in found
        ]

    def find_genes(self, model: str, species: str, key: str) -> list[StoredGene]:
        held = self._genes(model, species)
        if held is None:
            return []
        wanted = key.upper()
        rows = [row for row, keys in enumerate(held.keys) if wanted in keys]
        return [held.gene(row) for row in held.in_point_order(rows)[:FIND_LIMIT]]

    def list_genes(self, model: str, species: str) -> list[StoredGene]:
        held = self._genes(model, species)
        return [] if held is None else [held.gene(row) for row in held.in_point_order(range(len(held)))]

    def gene_vectors(self, model: str, species: str, gene_ids: list[str]) -> np.ndarray:
        held = self._genes(model, species, vectors=True)
        by_point: dict[str, np.ndarray] = {}
        if held is not None:
            wanted = set(gene_ids)
            rows = [row for row, gene_id in enumerate(held.columns["gene_id"]) if gene_id in wanted]
            by_point = {held.point_id(row): held.unit_vector(row) for row in rows}
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
