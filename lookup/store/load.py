"""Put an atlas's gene vectors into a store: the indexer's last step and `orthovec load`.

Upsert with deterministic IDs, then delete the species' points that are no longer in the gene
table, so a store always mirrors the atlas exactly (no duplicates, no ghosts of removed genes).
A store collection holds one embedding space (`schemas.space`): loading a species whose space
differs from the others' is refused, naming both, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from orthovec.core.files import check_free_space
from orthovec.lookup.store import EDGE_WAL_BYTES, WRITE_WAIT_S, EdgeStore, GeneStore, describe, open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound
from orthovec.schemas.space import EmbeddingSpace, require_one_space_id, space_of_genes
from orthovec.schemas.tables import GENES, read_table

#: Disk an Edge store load may take per byte of vectors: the WAL, the segment, and the optimizer's
#: rebuilt copy of it coexist for a moment.
EDGE_BYTES_PER_VECTOR_BYTE = 4


@dataclass(frozen=True)
class Loaded:
    species: str
    model: str
    genes: int
    removed: int


def check_store_space(store: GeneStore, model: str, species: str | None = None, space: str | None = None) -> None:
    """Refuse a store collection that mixes spaces, or (with `space`) one whose other species are in another.

    `species` is the one being (re)loaded: its own old points are about to be replaced, so they
    do not count against the new space.
    """
    if model not in store.models():
        return
    held = {sid: [s for s in names if s != species] for sid, names in store.spaces(model).items()}
    by_species = {name: sid for sid, names in held.items() for name in names}
    if space is not None and species is not None:
        by_species[species] = space
    require_one_space_id(by_species, f"The {model} vectors of {describe(store)}")


def load_genes(
    store: GeneStore, model: str, species: str, genes: pa.Table, space: EmbeddingSpace | None = None
) -> Loaded:
    check_store_space(store, model, species, space.id if space else None)
    store.upsert_genes(model, genes, space=space.id if space else None)
    removed = store.remove_missing(model, species, genes.column("gene_id").to_pylist())
    store.optimize(model)
    return Loaded(species, model, genes.num_rows, removed)


def load_atlas(
    atlas: Atlas, store: GeneStore, species: list[str] | None = None, model: str | None = None
) -> list[Loaded]:
    """Every (species, model) gene table of the atlas, or the chosen ones."""
    names = species or atlas.species_names()
    if not names:
        raise NotFound(f"The atlas {atlas.root} holds no species; index a proteome first.")
    loaded: list[Loaded] = []
    for name in names:
        if name not in atlas.species_names():
            raise NotFound(f"Species '{name}' is not in the atlas {atlas.root} ({', '.join(atlas.species_names())}).")
        models = [model] if model else atlas.models_for(name)
        for chosen in models:
            path = atlas.genes(name, chosen)
            genes = read_table(path, GENES)
            loaded.append(load_genes(store, chosen, name, genes, space_of_genes(path)))
    return loaded


class StoreSink:
    """The indexer's `GeneSink`: checked before the indexer writes anything, written last.

    `open` takes the store's write lock only for a moment, to refuse at once a store that a
    server holds or that holds another embedding space; the long embedding then runs without it,
    so queries and other species' runs go on. `load` takes it again, waiting for another run's
    commit if need be (never for a server), and holds it while the genes go in.
    """

    def __init__(self, atlas: Atlas, qdrant_url: str | None = None, qdrant_api_key: str | None = None) -> None:
        self.atlas, self.qdrant_url, self.qdrant_api_key = atlas, qdrant_url, qdrant_api_key

    def open(self, model: str, species: str, space: EmbeddingSpace) -> None:
        store = open_store(self.atlas, self.qdrant_url, self.qdrant_api_key, wait_s=WRITE_WAIT_S)
        try:
            if isinstance(store, EdgeStore):  # the room a new store's write-ahead log takes, before hours of embedding
                check_free_space(self.atlas.root / "qdrant", EDGE_WAL_BYTES, "the embedded store")
            check_store_space(store, model, species, space.id)
        finally:
            store.close()

    def load(self, model: str, species: str, genes: pa.Table, space: EmbeddingSpace) -> str:
        store = open_store(self.atlas, self.qdrant_url, self.qdrant_api_key, wait_s=WRITE_WAIT_S)
        try:
            if isinstance(store, EdgeStore):
                # Edge writes through mmap: on a full disk that is SIGBUS, not an error, so refuse first.
                vector_bytes = genes.num_rows * genes.schema.field("embedding").type.list_size * 4
                check_free_space(self.atlas.root / "qdrant", EDGE_BYTES_PER_VECTOR_BYTE * vector_bytes, "the store")
            load_genes(store, model, species, genes, space)
            return describe(store)
        finally:
            store.close()
