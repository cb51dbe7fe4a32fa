"""Gene-vector stores: one interface over Qdrant Edge (embedded default) and a Qdrant server.

Both engines hold one collection per model (vector widths differ between models) with species as a
tenant keyword index, and use the same deterministic point IDs, so loading the same genes twice
overwrites instead of duplicating. Everything above this module (indexer, queries, the API) talks
to `GeneStore` only, which is what makes "embedded or server" a matter of passing a URL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from orthovec.core.faults import fault_point
from orthovec.core.files import check_free_space, disk_error, process_alive
from orthovec.core.locks import FileLock
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, NotFound, Unavailable, UserError
from orthovec.schemas.space import PAYLOAD_FIELD

#: Namespace for point IDs: uuid5(model, species, gene_id) is the same on every machine and run.
POINT_NAMESPACE = uuid.UUID("7f1c2d0e-5b9a-4c53-9a51-0d6f1e2a9c11")

#: A proteome is ~20k genes: brute force over one species is exact and still sub-10 ms, so exact
#: search is used up to this many points per searched species and HNSW above it.
EXACT_SEARCH_MAX_POINTS = 50_000

#: HNSW beam width at query time; Qdrant's default is tuned for speed, and gene queries are few
#: and small (k ~ 10), so we buy recall.
HNSW_EF = 256

#: Species counts decide exact vs HNSW on every query; a server may be written by others, so its
#: cached counts expire (the embedded store is single-writer and invalidates on its own writes).
SERVER_COUNTS_TTL_S = 30.0


def use_exact(counts: dict[str, int], species: str | None) -> bool:
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
    def from_payload(cls, payload: dict[str, Any], score: float = float("nan")) -> StoredGene:
        return cls(
            species=payload["species"],
            gene_id=payload["gene_id"],
            gene_symbol=payload.get("gene_symbol"),
            taxid=payload.get("taxid"),
            n_proteins=int(payload.get("n_proteins") or 0),
            model=payload["model"],
            score=score,
        )


def _payloads(model: str, genes: pa.Table, space: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
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


def open_store(
    atlas: Atlas,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    *,
    read_only: bool = False,
    wait_s: float | None = None,
) -> GeneStore:
    """The embedded Edge store in the atlas, or a server when a URL (or `local:PATH`) is given.

    `read_only` opens the embedded store as a reader: it runs beside a server and other readers,
    and on a read-only atlas. `wait_s` bounds the wait for another writer (see `EdgeStore`).
    """
    if qdrant_url:
        return ServerStore(qdrant_url, api_key=api_key)
    return EdgeStore(atlas, read_only=read_only, wait_s=wait_s)


# --- embedded: Qdrant Edge --------------------------------------------------------------------

#: Payload indexes every Edge shard must have; `index` recreates any that are missing.
EDGE_INDEXES = ("species", "gene_key", PAYLOAD_FIELD)


#: Edge preallocates its write-ahead log in 32 MiB segments and writes them through mmap: without
#: room for two, opening a shard (even to read: it replays the log) dies of SIGBUS, not an error.
EDGE_WAL_BYTES = 64 * 2**20


def _allocated_bytes(directory: Path) -> int:
    """Disk blocks a directory really uses (its WAL segments are mostly holes)."""
    return sum(p.stat().st_blocks * 512 for p in directory.rglob("*") if p.is_file())


def _copy_sparse(source: str, target: str) -> None:
    """Copy a file keeping its holes: `shutil.copy2` would write each 32 MiB WAL segment in full."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size, offset = os.fstat(src.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            while start < end:
                block = src.read(min(end - start, 2**20))
                dst.write(block)
                start += len(block)
            offset = end
        dst.truncate(size)
    shutil.copystat(source, target)


def _edge_index_params(field: str) -> Any:
    import qdrant_edge as qe

    if field == "species":
        return qe.KeywordIndexParams(is_tenant=True)
    return qe.PayloadSchemaType.Keyword


#: How long a reader waits for a writer's commit (a store load) before it gives up.
READ_WAIT_S = 30.0
#: How long a writer waits for another writer's commit; readers (a server) are never waited for.
WRITE_WAIT_S = 600.0


class EdgeStore:
    """Qdrant's own engine in-process: one Edge shard per model under ATLAS/qdrant/<model>/.

    An Edge shard is owned by one process (its write-ahead log is locked), and Edge cannot open a
    shard read-only. So the atlas's store lock (`schemas.locks`) decides who may open it: a writer
    holds it exclusively while it loads genes, readers share it. A writer that finds readers (a
    running `serve`, a query) is refused at once; one that finds another writer waits up to
    `wait_s` for that commit to end. A reader waits up to `wait_s` for a writer's commit. A reader
    that finds the shard held by another reader, or on a read-only file system, opens a private
    copy in a temporary directory; its shared lock guarantees no writer changes the store meanwhile.
    """

    def __init__(self, atlas: Atlas, read_only: bool = False, wait_s: float | None = None) -> None:
        self.atlas = atlas
        self.read_only = read_only
        self.repaired: list[str] = []  # payload indexes `index` found missing and recreated
        self._shards: dict[str, Any] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._copies: list[Path] = []
        self._lock = FileLock(atlas.store_lock())
        deadline = time.monotonic() + (wait_s if wait_s is not None else READ_WAIT_S if read_only else 0.0)
        if read_only:
            while (atlas.root / "qdrant").is_dir() and not self._lock.acquire(shared=True):
                if time.monotonic() >= deadline:
                    holder = self._lock.holder() or "another orthovec process"
                    raise Unavailable(
                        f"The embedded store {atlas.root / 'qdrant'} is being written ({holder}). Wait for that "
                        "run to finish, then try again; or query a Qdrant server with --qdrant-url."
                    )
                time.sleep(0.2)
            return
        while not self._lock.acquire(shared=False):
            if self._readers_hold() or time.monotonic() >= deadline:
                raise Unavailable(
                    f"The embedded store {atlas.root / 'qdrant'} is open in another orthovec process (a server, a "
                    "query or another index; it takes one writer at a time, and none while others read). Stop "
                    "it or let it finish, then run again; nothing was changed. For shared use, load the atlas "
                    "into a Qdrant server (`orthovec load --qdrant-url URL`)."
                )
            time.sleep(0.2)

    def _readers_hold(self) -> bool:
        """Whether the lock is held shared (readers), as opposed to by a writer that will soon be done."""
        probe = FileLock(self._lock.path)
        readers = probe.acquire(shared=True)
        probe.release()
        return readers

    def _shard(self, model: str, dim: int | None = None) -> Any:
        if model in self._shards:
            return self._shards[model]
        path = self.atlas.qdrant(model)
        exists = (path / "edge_config.json").exists() or any(path.glob("segments*"))
        if not exists:
            if dim is None or self.read_only:
                raise NotFound(
                    f"No vectors for model '{model}' in the embedded store at {path}. "
                    f"Index a proteome with `orthovec index --model {model}` first."
                )
            check_free_space(path.parent, EDGE_WAL_BYTES, "creating the embedded store")
            self._create(path, dim)
        elif not self.read_only:
            check_free_space(path, EDGE_WAL_BYTES, "writing the embedded store")
        shard = self._open_for_reading(path) if self.read_only else self._open_for_writing(path)
        self._shards[model] = shard
        return shard

    def _create(self, path: Path, dim: int) -> None:
        """Build the shard and its indexes in a temporary directory, then rename it into place.

        A kill at any moment leaves either no shard or a complete one; a half-built shard (the
        old failure: no `species` index, so every query crashed) cannot be seen. Temporaries of
        killed runs are removed here: holding the store lock exclusively, nobody else builds one.
        """
        import qdrant_edge as qe

        for stale in path.parent.glob(f".{path.name}.creating-*"):
            shutil.rmtree(stale, ignore_errors=True)
        building = path.parent / f".{path.name}.creating-{os.getpid()}"
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        shard = qe.EdgeShard.create(str(building), config)
        fault_point("store-shard-created")
        for field in EDGE_INDEXES:
            shard.update(qe.UpdateOperation.create_field_index(field, _edge_index_params(field)))
        shard.close()
        os.rename(building, path)

    def _open_for_writing(self, path: Path) -> Any:
        """Load the shard and recreate any payload index a damaged store lacks."""
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(str(path))
        present = shard.info().payload_schema
        for field in EDGE_INDEXES:
            if field not in present:
                shard.update(qe.UpdateOperation.create_field_index(field, _edge_index_params(field)))
                self.repaired.append(field)
        return shard

    def _open_for_reading(self, path: Path) -> Any:
        """The shard itself, or a private copy when it is held by a server, read-only, or on a full disk."""
        import qdrant_edge as qe

        if shutil.disk_usage(path).free >= EDGE_WAL_BYTES:
            try:
                return qe.EdgeShard.load(str(path))
            except Exception as err:  # qdrant_edge raises a bare Exception for engine errors
                if "WouldBlock" not in str(err) and "os error 30" not in str(err):
                    raise
        for stale in Path(tempfile.gettempdir()).glob("orthovec-store-*-*"):
            pid = stale.name.split("-")[2]
            if pid.isdigit() and not process_alive(int(pid)):  # a killed reader's copy
                shutil.rmtree(stale, ignore_errors=True)
        copy = Path(tempfile.mkdtemp(prefix=f"orthovec-store-{os.getpid()}-"))
        self._copies.append(copy)
        check_free_space(copy, _allocated_bytes(path) + EDGE_WAL_BYTES, "a private copy of the embedded store")
        shutil.copytree(path, copy / path.name, copy_function=_copy_sparse)
        return qe.EdgeShard.load(str(copy / path.name))

    def upsert_genes(self, model: str, genes: pa.Table, space: str | None = None, batch_size: int = 1024) -> int:
        import qdrant_edge as qe

        vectors = embedding_matrix(genes)
        shard = self._shard(model, dim=vectors.shape[1])
        batch: list[Any] = []
        with self._disk_errors(model):
            for row, (pid, payload) in enumerate(_payloads(model, genes, space)):
                batch.append(qe.Point(pid, vectors[row].tolist(), payload))
                if len(batch) == batch_size:
                    shard.update(qe.UpdateOperation.upsert_points(batch))
                    batch = []
            if batch:
                shard.update(qe.UpdateOperation.upsert_points(batch))
            shard.flush()
        self._counts.pop(model, None)
        return genes.num_rows

    @contextlib.contextmanager
    def _disk_errors(self, model: str) -> Iterator[None]:
        """The engine reports a full or read-only disk as a bare Exception; say it as `disk_error` does."""
        try:
            yield
        except Exception as err:  # qdrant_edge raises a bare Exception for engine errors
            code = errno.ENOSPC if "os error 28" in str(err) else errno.EROFS if "os error 30" in str(err) else 0
            if not code:
                raise
            raise (disk_error(OSError(code, os.strerror(code)), self.atlas.qdrant(model)) or err) from err

    def remove_missing(self, model: str, species: str, keep_gene_ids: Iterable[str]) -> int:
        import qdrant_edge as qe

        keep = {point_id(model, species, g) for g in keep_gene_ids}
        stale: list[int | uuid.UUID | str] = [p for p in self._species_point_ids(model, species) if p not in keep]
        if stale:
            shard = self._shard(model)
            with self._disk_errors(model):
                shard.update(qe.UpdateOperation.delete_points(stale))
                shard.flush()
            self._counts.pop(model, None)
        return len(stale)

    def _species_records(self, model: str, species: str, with_payload: bool) -> list[Any]:
        import qdrant_edge as qe

        shard = self._shard(model)
        records: list[Any] = []
        offset = None
        while True:
            page, offset = shard.scroll(
                qe.ScrollRequest(
                    offset=offset, limit=4096, filter=_edge_species_filter(species), with_payload=with_payload
                )
            )
            records.extend(page)
            if offset is None:
                return records

    def _species_point_ids(self, model: str, species: str) -> list[str]:
        return [str(r.id) for r in self._species_records(model, species, with_payload=False)]

    def list_genes(self, model: str, species: str) -> list[StoredGene]:
        return [StoredGene.from_payload(r.payload) for r in self._species_records(model, species, True)]

    def search(
        self, model: str, vectors: np.ndarray, species: str | None, k: int, exact: bool | None = None
    ) -> list[list[StoredGene]]:
        import qdrant_edge as qe

        shard = self._shard(model)
        query_filter = _edge_species_filter(species) if species else None
        if exact is None:
            exact = use_exact(self.species_counts(model), species)
        requests = [
            qe.QueryRequest(
                limit=k,
                query=qe.Query.Nearest(vector.tolist()),
                filter=query_filter,
                with_payload=True,
                params=qe.SearchParams(exact=exact, hnsw_ef=None if exact else max(HNSW_EF, k)),
            )
            for vector in np.atleast_2d(vectors).astype(np.float32)
        ]
        results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [[StoredGene.from_payload(p.payload, p.score) for p in hits] for hits in results]

    def optimize(self, model: str) -> None:
        """Build HNSW and merge segments now, so the first queries after a load are fast."""
        with self._disk_errors(model):
            self._shard(model).optimize()

    def find_genes(self, model: str, species: str, key: str) -> list[StoredGene]:
        import qdrant_edge as qe

        conditions: list[Any] = [  # Filter.must takes a union of condition kinds; these are all FieldConditions
            qe.FieldCondition(key="species", match=qe.MatchValue(species)),
            qe.FieldCondition(key="gene_key", match=qe.MatchValue(key.upper())),
        ]
        records, _ = self._shard(model).scroll(
            qe.ScrollRequest(limit=100, filter=qe.Filter(must=conditions), with_payload=True)
        )
        return [StoredGene.from_payload(r.payload) for r in records]

    def gene_vectors(self, model: str, species: str, gene_ids: list[str]) -> np.ndarray:
        records = self._shard(model).retrieve(
            [point_id(model, species, g) for g in gene_ids], with_payload=False, with_vector=True
        )
        by_id = {str(r.id): r.vector for r in records}
        return np.asarray([by_id[point_id(model, species, g)] for g in gene_ids], dtype=np.float32)

    def species_counts(self, model: str) -> dict[str, int]:
        if model not in self._counts:
            self._counts[model] = self._facet(model, "species")
        return dict(self._counts[model])

    def spaces(self, model: str) -> dict[str, list[str]]:
        import qdrant_edge as qe

        found = self._facet(model, PAYLOAD_FIELD)
        of_space = {space: qe.FieldCondition(key=PAYLOAD_FIELD, match=qe.MatchValue(space)) for space in found}
        return {space: sorted(self._facet(model, "species", qe.Filter(must=[c]))) for space, c in of_space.items()}

    def _facet(self, model: str, key: str, query_filter: Any = None) -> dict[str, int]:
        import qdrant_edge as qe

        try:
            facets = self._shard(model).facet(qe.FacetRequest(key=key, limit=10_000, exact=True, filter=query_filter))
        except Exception as err:  # qdrant_edge raises a bare Exception for engine errors
            if "No appropriate index" not in str(err):
                raise
            if key == PAYLOAD_FIELD:
                return {}  # a store loaded before spaces were recorded: nothing to compare
            raise Invalid(
                f"The embedded store {self.atlas.qdrant(model)} lacks its '{key}' index (an interrupted run of an "
                "older orthovec left it so). Run `orthovec index` for any species of this atlas again: it "
                "repairs the store's indexes."
            ) from err
        return {str(hit.value): int(hit.count) for hit in facets}

    def models(self) -> list[str]:
        base = self.atlas.root / "qdrant"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()
        for copy in self._copies:
            shutil.rmtree(copy, ignore_errors=True)
        self._copies.clear()
        self._lock.release()


def _edge_species_filter(species: str) -> Any:
    import qdrant_edge as qe

    return qe.Filter(must=[qe.FieldCondition(key="species", match=qe.MatchValue(species))])


# --- server: qdrant-client ---------------------------------------------------------------------

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
            raise UserError(
                f"The Qdrant server at {self.url} has no collection for model '{model}' ({name}). "
                f"Push an atlas there with `orthovec load --qdrant-url {self.url}`."
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
            for row, (pid, payload) in enumerate(_payloads(model, genes, space))
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
        by_id = {str(r.id): r.vector for r in records}
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

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


def describe(store: GeneStore) -> str:
    """Where the vectors live, for messages."""
    if isinstance(store, EdgeStore):
        return f"embedded Qdrant Edge store in {Path(store.atlas.root) / 'qdrant'}"
    return f"Qdrant at {getattr(store, 'url', '?')}"
