"""The embedded backend: Qdrant's own engine in-process (qdrant-edge-py), one shard per model.

An Edge shard is owned by one process (its write-ahead log is locked) and Edge 0.9 cannot open a
shard read-only (its Rust crate has a read-only follower; the Python package does not offer it).
So the atlas's store lock (`core.locks`) decides who may open a shard: a writer holds it
exclusively while it loads genes, readers share it. A reader that cannot own the shard (a server
holds it, the atlas is read-only, the disk has no room for the write-ahead log) does not copy it:
`backends.open_store` gives it the atlas's gene tables instead (`gene_tables.GeneTableStore`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from orthovec.core.faults import fault_point
from orthovec.core.files import check_free_space, disk_error
from orthovec.core.locks import FileLock
from orthovec.lookup.store.base import (
    HNSW_EF,
    StoredGene,
    embedding_matrix,
    gene_payloads,
    point_id,
    use_exact,
    vectors_in_order,
)
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, NotFound, Unavailable
from orthovec.schemas.space import PAYLOAD_FIELD

#: Payload indexes every Edge shard must have; `index` recreates any that are missing.
EDGE_INDEXES = ("species", "gene_key", PAYLOAD_FIELD)

#: Edge preallocates its write-ahead log in 32 MiB segments and writes them through mmap: without
#: room for two, opening a shard (even to read: it replays the log) dies of SIGBUS, not an error.
EDGE_WAL_BYTES = 64 * 2**20

#: How long a reader waits for a writer's commit (a store load) before it gives up.
READ_WAIT_S = 30.0
#: How long a writer waits for another writer's commit; readers (a server) are never waited for.
WRITE_WAIT_S = 600.0
#: How long a writer holding the store lock waits for a write-ahead log locked by a passing holder.
WAL_WAIT_S = 30.0


class ShardUnreadable(Exception):
    """This process cannot own the shard to read it; the reason is the message (not a user error)."""


def embedded_models(atlas: Atlas) -> list[str]:
    """Models with a shard directory in the atlas's embedded store."""
    base = atlas.root / "qdrant"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def shard_exists(path: Path) -> bool:
    return (path / "edge_config.json").exists() or any(path.glob("segments*"))


def held_elsewhere(shard: Path) -> bool:
    """Whether another process has the shard open: Edge flocks its `wal/` directory while it does.

    Asked before loading, because a load that then fails on that lock has already opened (and
    touched) the owner's segment files.
    """
    try:
        wal = os.open(shard / "wal", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(wal, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts only with the owner's exclusive lock
    except BlockingIOError:
        return True
    finally:
        os.close(wal)  # and drops the probe's lock
    return False


def no_vectors(atlas: Atlas, model: str) -> NotFound:
    return NotFound(
        f"No vectors for model '{model}' in the embedded store at {atlas.qdrant(model)}. "
        f"Index a proteome with model '{model}' first (`orthovec index`)."
    )


def lock_store(atlas: Atlas, *, shared: bool, wait_s: float | None = None) -> FileLock:
    """The store lock, held: shared for a reader, exclusive for a writer.

    A writer that finds readers (a running `serve`, a query) is refused at once; one that finds
    another writer waits up to `wait_s` for that commit to end. A reader waits up to `wait_s` (by
    default `READ_WAIT_S`) for a writer's commit. Without a store there is nothing to lock for reading.
    """
    lock = FileLock(atlas.store_lock())
    deadline = time.monotonic() + (wait_s if wait_s is not None else READ_WAIT_S if shared else 0.0)
    if shared:
        while (atlas.root / "qdrant").is_dir() and not lock.acquire(shared=True):
            if time.monotonic() >= deadline:
                holder = lock.holder() or "another orthovec process"
                raise Unavailable(
                    f"The embedded store {atlas.root / 'qdrant'} is being written ({holder}). Wait for that "
                    "run to finish, then try again; or query a Qdrant server (qdrant_url)."
                )
            time.sleep(0.2)
        return lock
    while not lock.acquire(shared=False):
        if _readers_hold(lock) or time.monotonic() >= deadline:
            raise Unavailable(
                f"The embedded store {atlas.root / 'qdrant'} is open in another orthovec process (a server, a "
                "query or another index; it takes one writer at a time, and none while others read). Stop "
                "it or let it finish, then run again; nothing was changed. For shared use, load the atlas "
                "into a Qdrant server (`orthovec load`)."
            )
        time.sleep(0.2)
    return lock


def _readers_hold(lock: FileLock) -> bool:
    """Whether the lock is held shared (readers), as opposed to by a writer that will soon be done."""
    probe = FileLock(lock.path)
    readers = probe.acquire(shared=True)
    probe.release()
    return readers


def _edge_index_params(field: str) -> Any:
    import qdrant_edge as qe

    if field == "species":
        return qe.KeywordIndexParams(is_tenant=True)
    return qe.PayloadSchemaType.Keyword


class EdgeStore:
    """Qdrant's own engine in-process: one Edge shard per model under ATLAS/qdrant/<model>/.

    A writer opens shards as it needs them. A reader (`read_only`) opens every model's shard at
    once, so that a shard it cannot own is known before it answers anything: it raises
    `ShardUnreadable` then, and `open_store` reads the gene tables instead. `lock` is a store lock
    the caller already holds (`lock_store`); the store releases it on `close`, or leaves it held
    when construction fails.
    """

    def __init__(
        self, atlas: Atlas, read_only: bool = False, wait_s: float | None = None, *, lock: FileLock | None = None
    ) -> None:
        self.atlas = atlas
        self.read_only = read_only
        self.repaired: list[str] = []  # payload indexes `index` found missing and recreated
        self._shards: dict[str, Any] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = lock if lock is not None else lock_store(atlas, shared=read_only, wait_s=wait_s)
        if read_only:
            try:
                for model in embedded_models(atlas):
                    if shard_exists(atlas.qdrant(model)):
                        self._shard(model)
            except BaseException:
                self._close_shards()
                if lock is None:
                    self._lock.release()
                raise

    def _shard(self, model: str, dim: int | None = None) -> Any:
        if model in self._shards:
            return self._shards[model]
        path = self.atlas.qdrant(model)
        if not shard_exists(path):
            if dim is None or self.read_only:
                raise no_vectors(self.atlas, model)
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
        """Load the shard and recreate any payload index a damaged store lacks.

        Holding the store lock exclusively, a write-ahead log found locked can only have a passing
        holder, and the load waits for it, up to `WAL_WAIT_S`. It was seen once (`WouldBlock`), in
        a build loading three species from parallel threads that also start MMseqs2 children: a
        child forked by another thread keeps a copy of every descriptor until it execs, Edge's lock
        on the log included (how this build got there was not pinned down).
        """
        import qdrant_edge as qe

        deadline = time.monotonic() + WAL_WAIT_S
        while True:
            try:
                shard = qe.EdgeShard.load(str(path))
                break
            except Exception as err:  # qdrant_edge raises a bare Exception for engine errors
                if "WouldBlock" not in str(err):
                    raise
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"The embedded store's write-ahead log {path / 'wal'} stayed locked for {WAL_WAIT_S:.0f} s "
                        "although no other orthovec run holds the store; stop whatever holds it (`fuser -v` names "
                        "it) and run again. Nothing was changed."
                    ) from err
                time.sleep(0.05)
        present = shard.info().payload_schema
        for field in EDGE_INDEXES:
            if field not in present:
                shard.update(qe.UpdateOperation.create_field_index(field, _edge_index_params(field)))
                self.repaired.append(field)
        return shard

    def _open_for_reading(self, path: Path) -> Any:
        """The shard itself, or `ShardUnreadable` when a server holds it, the atlas is read-only or the disk full."""
        import qdrant_edge as qe

        if shutil.disk_usage(path).free < EDGE_WAL_BYTES:
            raise ShardUnreadable(f"less than {EDGE_WAL_BYTES // 2**20} MiB free for its write-ahead log")
        if not os.access(path, os.W_OK):
            raise ShardUnreadable("the file system is read-only")
        if held_elsewhere(path):
            raise ShardUnreadable("another process, such as a server, holds it")
        try:
            return qe.EdgeShard.load(str(path))
        except Exception as err:  # qdrant_edge raises a bare Exception for engine errors
            if "WouldBlock" in str(err):
                raise ShardUnreadable("another process, such as a server, holds it") from err
            if "os error 30" in str(err):
                raise ShardUnreadable("the file system is read-only") from err
            raise

    def upsert_genes(self, model: str, genes: pa.Table, space: str | None = None, batch_size: int = 1024) -> int:
        import qdrant_edge as qe

        vectors = embedding_matrix(genes)
        shard = self._shard(model, dim=vectors.shape[1])
        batch: list[Any] = []
        with self._disk_errors(model):
            for row, (pid, payload) in enumerate(gene_payloads(model, genes, space)):
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
        by_point = {str(r.id): r.vector for r in records}
        return vectors_in_order(by_point, model, species, gene_ids, f"The embedded store {self.atlas.qdrant(model)}")

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
        return embedded_models(self.atlas)

    def _close_shards(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    def close(self) -> None:
        self._close_shards()
        self._lock.release()


def _edge_species_filter(species: str) -> Any:
    import qdrant_edge as qe

    return qe.Filter(must=[qe.FieldCondition(key="species", match=qe.MatchValue(species))])
