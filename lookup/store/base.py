"""What every gene-vector store is: the `GeneStore` protocol and the helpers its backends share.

Every backend (Qdrant Edge, a Qdrant server, the atlas's gene tables) names a gene's point the
same way and stores the same payload, so loading the same genes twice overwrites instead of
duplicating, and the answers of two backends holding the same genes can be compared one by one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from orthovec.schemas.errors import NotFound
from orthovec.schemas.space import PAYLOAD_FIELD

#: Namespace for point IDs: uuid5(model, species, gene_id) is the same on every machine and run.
POINT_NAMESPACE = uuid.UUID("7f1c2d0e-5b9a-4c53-9a51-0d6f1e2a9c11")

#: A proteome is ~20k genes: brute force over one species is exact and still sub-10 ms, so exact
#: search is used up to this many points per searched species and HNSW above it.
EXACT_SEARCH_MAX_POINTS = 50_000

#: HNSW beam width at query time; Qdrant's default is tuned for speed, and gene queries are few
#: and small (k ~ 10), so we buy recall.
HNSW_EF = 256


def use_exact(counts: Mapping[str, int], species: str | None) -> bool:
    searched = counts.get(species, 0) if species else sum(counts.values())
    return searched <= EXACT_SEARCH_MAX_POINTS


def point_id(model: str, species: str, gene_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{model}\t{species}\t{gene_id}"))


def gene_keys(gene_id: str, gene_symbol: str | None) -> list[str]:
    """Upper-cased lookup keys: a gene is found by its ID or symbol whatever the species' case rules."""
    keys = {gene_id.upper()}
    if gene_symbol:
        keys.add(gene_symbol.upper())
    return sorted(keys)


@dataclass(frozen=True)
class StoredGene:
    """A gene as the store knows it (payload), with a score when it came from a search."""

    species: str
    gene_id: str
    gene_symbol: str | None
    taxid: int | None
    n_proteins: int
    model: str
    score: float = float("nan")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], score: float = float("nan")) -> StoredGene:
        return cls(
            species=payload["species"],
            gene_id=payload["gene_id"],
            gene_symbol=payload.get("gene_symbol"),
            taxid=payload.get("taxid"),
            n_proteins=int(payload.get("n_proteins") or 0),
            model=payload["model"],
            score=score,
        )


def gene_payloads(model: str, genes: pa.Table, space: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(point id, payload) of each row of a GENES table: what every backend stores for a gene."""
    columns = {name: genes.column(name).to_pylist() for name in ("species", "gene_id", "gene_symbol")}
    taxids = genes.column("taxid").to_pylist() if "taxid" in genes.column_names else [None] * genes.num_rows
    n_proteins = genes.column("n_proteins").to_pylist()
    for i in range(genes.num_rows):
        species, gene_id, symbol = columns["species"][i], columns["gene_id"][i], columns["gene_symbol"][i]
        payload = {
            "species": species,
            "taxid": taxids[i],
            "gene_id": gene_id,
            "gene_symbol": symbol,
            "n_proteins": n_proteins[i],
            "model": model,
            "gene_key": gene_keys(gene_id, symbol),
            PAYLOAD_FIELD: space,
        }
        yield point_id(model, species, gene_id), payload


def embedding_matrix(genes: pa.Table) -> np.ndarray:
    """(genes, dim) float32 view of a GENES table's fixed-size-list embedding column."""
    column = genes.column("embedding").combine_chunks()
    dim = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def vectors_in_order(
    by_point: Mapping[str, Any], model: str, species: str, gene_ids: Sequence[str], where: str
) -> np.ndarray:
    """(genes, dim) float32 rows of `by_point` (point id -> vector) in the order of `gene_ids`."""
    missing = [g for g in gene_ids if point_id(model, species, g) not in by_point]
    if missing:
        raise NotFound(
            f"{where} holds no {model} vector for {len(missing)} {species} gene(s): {', '.join(missing[:5])}."
        )
    return np.asarray([by_point[point_id(model, species, g)] for g in gene_ids], dtype=np.float32)


class GeneStore(Protocol):
    """What the rest of orthovec needs from a vector store."""

    def upsert_genes(self, model: str, genes: pa.Table, space: str | None = None) -> int: ...

    def spaces(self, model: str) -> dict[str, list[str]]:
        """Embedding-space id → species holding points of that space (points loaded without one are left out)."""
        ...

    def remove_missing(self, model: str, species: str, keep_gene_ids: Iterable[str]) -> int: ...

    def search(
        self, model: str, vectors: np.ndarray, species: str | None, k: int, exact: bool | None = None
    ) -> list[list[StoredGene]]: ...

    def optimize(self, model: str) -> None: ...

    def find_genes(self, model: str, species: str, key: str) -> list[StoredGene]: ...

    def list_genes(self, model: str, species: str) -> list[StoredGene]: ...

    def gene_vectors(self, model: str, species: str, gene_ids: list[str]) -> np.ndarray: ...

    def species_counts(self, model: str) -> dict[str, int]: ...

    def models(self) -> list[str]: ...

    def close(self) -> None: ...
