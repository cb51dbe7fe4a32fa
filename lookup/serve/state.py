"""What every request handler shares: one `ServeState` on `app.state.orthovec`, reached through FastAPI
dependencies (as FastAPI's "bigger applications" guide keeps shared things out of closures).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from orthovec.lookup.homologs import AtlasReader, Catalogue, SequenceSearch
from orthovec.lookup.query import GeneRef
from orthovec.lookup.sequence import SequenceEmbedder
from orthovec.lookup.store import EdgeStore, GeneStore, ServerStore, describe
from orthovec.schemas.api import ApiLimits
from orthovec.schemas.atlas import Atlas

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when the server has a key")


def store_lock(store: GeneStore | None) -> contextlib.AbstractContextManager[Any]:
    """A lock for stores whose engine is not safe under concurrent calls, else a no-op.

    Qdrant Edge (a Rust engine with its own locking) and the remote qdrant-client (an httpx
    client) take concurrent reads; qdrant-client's local mode (`local:PATH`, `:memory:`) is a
    pure-Python test engine with no thread-safety promise, and any other store is not known to be.
    """
    local = isinstance(store, ServerStore) and (store.url == ":memory:" or store.url.startswith("local:"))
    if store is None or isinstance(store, EdgeStore) or (isinstance(store, ServerStore) and not local):
        return contextlib.nullcontext()
    return threading.Lock()


@dataclass
class ServeState:
    """The open store and atlas a server answers from, and how it answers (no store: an atlas
    indexed without embeddings, answered from its mapping and alignment tables)."""

    store: GeneStore | None
    atlas: Atlas
    limits: ApiLimits
    embed: SequenceEmbedder | None = None
    search: SequenceSearch | None = None
    api_key: str | None = None
    reader: AtlasReader = field(init=False)
    lock: contextlib.AbstractContextManager[Any] = field(init=False)
    #: One embedding batch at a time (a model's activations are large), one MMseqs2 search at a time
    #: (it uses every core it is given).
    embed_lock: threading.Lock = field(default_factory=threading.Lock)
    search_lock: threading.Lock = field(default_factory=threading.Lock)

    #: Gene lists of species the atlas has no proteins for (a Qdrant server's), by (model, species, count).
    gene_lists: dict[tuple[str | None, str, int], list[GeneRef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reader = AtlasReader(self.atlas, cache=True)
        self.lock = store_lock(self.store)
        with self.lock:
            # Open every shard now: lazily opening one from two request threads at once would race.
            for model in self.store.models() if self.store is not None else []:
                self.store.species_counts(model)  # type: ignore[union-attr]

    def gene_list(self, catalogue: Catalogue, model: str | None, species: str) -> list[GeneRef]:
        """`catalogue.genes`, kept for a species only the store holds (listing a store's species
        scrolls every point; a store that gained or lost genes is listed again)."""
        if species in catalogue.atlas_species or catalogue.store is None or model is None:
            return catalogue.genes(model, species)
        key = (model, species, catalogue.store.species_counts(model).get(species, 0))
        if key not in self.gene_lists:
            self.gene_lists[key] = catalogue.genes(model, species)
        return self.gene_lists[key]

    def keyed(self, key: str | None) -> bool:
        """Whether `key` is this server's API key (False when it has none: nobody holds a key then)."""
        return (
            self.api_key is not None and key is not None and secrets.compare_digest(key.encode(), self.api_key.encode())
        )

    def private(self) -> list[str]:
        """Server-side places no client without the key may see: the atlas directory, a local store."""
        places = {str(self.atlas.root), str(self.atlas.root.resolve())}
        url = getattr(self.store, "url", "")
        if isinstance(url, str) and url.startswith("local:"):
            places.add(url.removeprefix("local:"))
        return sorted((p for p in places if p not in ("", ".")), key=len, reverse=True)

    def shown(self, text: str, key: str | None) -> str:
        """`text` as this client may read it: server paths replaced unless it holds the key."""
        if self.keyed(key):
            return text
        for place in self.private():
            text = text.replace(place, "ATLAS")
        return text

    def store_name(self, key: str | None) -> str:
        if self.store is None:
            return "no vector store (species indexed without embeddings)"
        return self.shown(describe(self.store), key)


def get_state(request: Request) -> ServeState:
    state: ServeState = request.app.state.orthovec
    return state


State = Annotated[ServeState, Depends(get_state)]


def require_key(state: State, key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> None:
    """Every data endpoint's dependency: the X-API-Key header must hold the server's key, if it has one."""
    if state.api_key is not None and not state.keyed(key):
        raise HTTPException(status_code=401, detail="Missing or wrong X-API-Key header.")


def client_key(request: Request) -> str | None:
    return request.headers.get("x-api-key")
