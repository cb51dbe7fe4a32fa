"""The server backend: a Qdrant server or cluster through qdrant-client, one collection per model.

Species is a tenant keyword index, as Qdrant recommends for many small partitions of one
collection; the point IDs and payloads are `base`'s, so a server loaded from an atlas answers as
its embedded store does (tests/test_store_congruence.py).
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from orthovec.lookup.store.base import (
    HNSW_EF,
    StoredGene,
    embedding_matrix,
    gene_payloads,
    point_id,
    use_exact,
    vectors_in_order,
)
from orthovec.schemas.errors import NotFound
from orthovec.schemas.space import PAYLOAD_FIELD

#: Species counts decide exact vs HNSW on every query; a server may be written by others, so its
#: cached counts expire (the embedded store is single-writer and invalidates on its own writes).
SERVER_COUNTS_TTL_S = 30.0

COLLECTION_PREFIX = "orthovec__"


class ServerStore:
    """A Qdrant server or cluster through qdrant-client (one collection per model).

    `local:PATH` (or `:memory:`) selects qdrant-client's local mode, which speaks the same client
    API without a server; the tests use it because no Qdrant server can run on CI machines.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: int = 60) -> None:
        from qdrant_client import QdrantClient

        if url == ":memory:" or url.startswith("local:"):
            # Local mode is exact brute force and ignores payload indexes: expected, not news.
            warnings.filterwarnings("ignore", message=r"(Payload indexes|Local mode)", category=UserWarning)
            if url == ":memory:":
                self.client = QdrantClient(location=":memory:")
            else:
                self.client = QdrantClient(path=url.removeprefix("local:"))
        else:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
        self.url = url
        self._counts: dict[str, tuple[float, dict[str, int]]] = {}

    @staticmethod
    def collection(model: str) -> str:
        return f"{COLLECTION_PREFIX}{model}"

    def _ensure_collection(self, model: str, dim: int) -> None:
        from qdrant_client import models as qm

        name = self.collection(model)
        if self.client.collection_exists(name):
            return
        self.client.create_collection(name, vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE))
        self.client.create_payload_index(
            name, "species", qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True)
        )
        self.client.create_payload_index(name, "gene_key", qm.PayloadSchemaType.KEYWORD)
        self.client.create_payload_index(name, PAYLOAD_FIELD, qm.PayloadSchemaType.KEYWORD)

    def _require_collection(self, model: str) -> str:
        name = self.collection(model)
        if not self.client.collection_exists(name):
            raise NotFound(
                f"The Qdrant server at {self.url} has no collection for model '{model}' ({name}). "
                "Push an atlas there with `orthovec load` and this URL."
            )
        return name

    def upsert_genes(
        self, model: str, genes: pa.Table, space: str | None = None, batch_size: int = 512, parallel: int = 1
    ) -> int:
        from qdrant_client import models as qm

        vectors = embedding_matrix(genes)
        self._ensure_collection(model, vectors.shape[1])
        points = (
            qm.PointStruct(id=pid, vector=vectors[row].tolist(), payload=payload)
            for row, (pid, payload) in enumerate(gene_payloads(model, genes, space))
        )
        self.client.upload_points(
            self.collection(model), points, batch_size=batch_size, parallel=parallel, max_retries=3, wait=True
        )
        self._counts.pop(model, None)
        return genes.num_rows

    def remove_missing(self, model: str, species: str, keep_gene_ids: Iterable[str]) -> int:
        from qdrant_client import models as qm

        name = self._require_collection(model)
        keep = {point_id(model, species, g) for g in keep_gene_ids}
        stale: list[int | str | uuid.UUID] = [
            str(r.id) for r in self._species_records(name, species) if str(r.id) not in keep
        ]
        if stale:
            self.client.delete(name, points_selector=qm.PointIdsList(points=stale), wait=True)
            self._counts.pop(model, None)
        return len(stale)

    def search(
        self, model: str, vectors: np.ndarray, species: str | None, k: int, exact: bool | None = None
    ) -> list[list[StoredGene]]:
        from qdrant_client import models as qm

        name = self._require_collection(model)
        query_filter = _server_species_filter(species) if species else None
        if exact is None:
            exact = use_exact(self.species_counts(model), species)
        params = qm.SearchParams(exact=exact, hnsw_ef=None if exact else max(HNSW_EF, k))
        requests = [
            qm.QueryRequest(query=v.tolist(), filter=query_filter, limit=k, with_payload=True, params=params)
            for v in np.atleast_2d(vectors).astype(np.float32)
        ]
        responses = self.client.query_batch_points(name, requests=requests)
        return [[StoredGene.from_payload(p.payload or {}, p.score) for p in r.points] for r in responses]

    def find_genes(self, model: str, species: str, key: str) -> list[StoredGene]:
        from qdrant_client import models as qm

        name = self._require_collection(model)
        query_filter = qm.Filter(
            must=[
                qm.FieldCondition(key="species", match=qm.MatchValue(value=species)),
                qm.FieldCondition(key="gene_key", match=qm.MatchValue(value=key.upper())),
            ]
        )
        records, _ = self.client.scroll(name, scroll_filter=query_filter, limit=100)
        return [StoredGene.from_payload(r.payload or {}) for r in records]

    def _species_records(self, collection: str, species: str) -> list[Any]:
        records: list[Any] = []
        offset = None
        while True:
            page, offset = self.client.scroll(
                collection, scroll_filter=_server_species_filter(species), limit=4096, offset=offset
            )
            records.extend(page)
            if offset is None:
                return records

    def list_genes(self, model: str, species: str) -> list[StoredGene]:
        name = self._require_collection(model)
        return [StoredGene.from_payload(r.payload or {}) for r in self._species_records(name, species)]

    def gene_vectors(self, model: str, species: str, gene_ids: list[str]) -> np.ndarray:
        name = self._require_collection(model)
        ids = [point_id(model, species, g) for g in gene_ids]
        records = self.client.retrieve(name, ids=ids, with_vectors=True, with_payload=False)
        by_point = {str(r.id): r.vector for r in records}
        return vectors_in_order(by_point, model, species, gene_ids, f"The Qdrant server at {self.url}")

    def optimize(self, model: str) -> None:
        """A server indexes in the background on its own; nothing to do."""

    def species_counts(self, model: str) -> dict[str, int]:
        cached = self._counts.get(model)
        if cached is None or time.monotonic() - cached[0] > SERVER_COUNTS_TTL_S:
            cached = (time.monotonic(), self._count_species(model))
            self._counts[model] = cached
        return dict(cached[1])

    def _count_species(self, model: str) -> dict[str, int]:
        return self._facet(model, "species")

    def spaces(self, model: str) -> dict[str, list[str]]:
        from qdrant_client import models as qm

        return {
            space: sorted(
                self._facet(model, "species", qm.FieldCondition(key=PAYLOAD_FIELD, match=qm.MatchValue(value=space)))
            )
            for space in self._facet(model, PAYLOAD_FIELD)
        }

    def _facet(self, model: str, key: str, condition: Any = None) -> dict[str, int]:
        from qdrant_client import models as qm
        from qdrant_client.http.exceptions import UnexpectedResponse

        name = self._require_collection(model)
        query_filter = qm.Filter(must=[condition]) if condition is not None else None
        try:
            facets = self.client.facet(name, key=key, facet_filter=query_filter, limit=10_000, exact=True)
            return {str(hit.value): int(hit.count) for hit in facets.hits}
        except (NotImplementedError, ValueError, UnexpectedResponse):
            # qdrant-client's local mode has no facet endpoint, and a server collection made before
            # the `space` index existed cannot facet on it; count by scrolling instead.
            counts: dict[str, int] = {}
            offset = None
            while True:
                records, offset = self.client.scroll(
                    name,
                    scroll_filter=query_filter,
                    limit=4096,
                    offset=offset,
                    with_payload=qm.PayloadSelectorInclude(include=[key]),
                )
                for r in records:
                    value = (r.payload or {}).get(key)
                    if value is not None:
                        counts[str(value)] = counts.get(str(value), 0) + 1
                if offset is None:
                    return counts

    def models(self) -> list[str]:
        names = [c.name for c in self.client.get_collections().collections]
        return sorted(n.removeprefix(COLLECTION_PREFIX) for n in names if n.startswith(COLLECTION_PREFIX))

    def close(self) -> None:
        self.client.close()


def _server_species_filter(species: str) -> Any:
    from qdrant_client import models as qm

    return qm.Filter(must=[qm.FieldCondition(key="species", match=qm.MatchValue(value=species))])
