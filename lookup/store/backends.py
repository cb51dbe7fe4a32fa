"""Which backend a caller gets, decided in one place (as qdrant-client's `QdrantClient` does).

A URL (or `local:PATH`, `:memory:`) means a Qdrant server through qdrant-client; otherwise the
atlas's embedded Qdrant Edge store. A reader of the embedded store that cannot own its shard reads
the atlas's gene tables in place, with the same answers; no path copies the store.
"""

from __future__ import annotations

from pathlib import Path

from orthovec.core.logs import get_logger
from orthovec.lookup.store.base import GeneStore
from orthovec.lookup.store.edge import EdgeStore, ShardUnreadable, lock_store
from orthovec.lookup.store.gene_tables import GeneTableStore
from orthovec.lookup.store.server import ServerStore
from orthovec.schemas.atlas import Atlas

logger = get_logger("lookup.store")


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
    on a read-only atlas and on a full disk (then from the gene tables, see `GeneTableStore`).
    `wait_s` bounds the wait for another writer's commit (see `edge.lock_store`).
    """
    if qdrant_url:
        return ServerStore(qdrant_url, api_key=api_key)
    if not read_only:
        return EdgeStore(atlas, wait_s=wait_s)
    lock = lock_store(atlas, shared=True, wait_s=wait_s)
    try:
        return EdgeStore(atlas, read_only=True, lock=lock)
    except ShardUnreadable as why:
        logger.debug("Reading the gene tables of %s in place of its embedded store (%s).", atlas.root, why)
        return GeneTableStore(atlas, lock, why=str(why))
    except BaseException:
        lock.release()
        raise


def describe(store: GeneStore) -> str:
    """Where the vectors live, for messages."""
    if isinstance(store, EdgeStore):
        return f"embedded Qdrant Edge store in {Path(store.atlas.root) / 'qdrant'}"
    if isinstance(store, GeneTableStore):
        return f"gene tables of {store.atlas.root} (read in place of its embedded store: {store.why})"
    return f"Qdrant at {getattr(store, 'url', '?')}"
