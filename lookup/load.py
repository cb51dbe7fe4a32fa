"""Put an atlas's gene vectors into a store: the indexer's last step and `orthovec load`.

Upsert with deterministic IDs, then delete the species' points that are no longer in the gene
table, so a store always mirrors the atlas exactly (no duplicates, no ghosts of removed genes).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from orthovec.lookup.store import GeneStore
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import GENES, read_table


@dataclass(frozen=True)
class Loaded:
    species: str
    model: str
    genes: int
    removed: int


def load_genes(store: GeneStore, model: str, species: str, genes: pa.Table) -> Loaded:
    store.upsert_genes(model, genes)
    removed = store.remove_missing(model, species, genes.column("gene_id").to_pylist())
    store.optimize(model)
    return Loaded(species, model, genes.num_rows, removed)


def load_atlas(
    atlas: Atlas, store: GeneStore, species: list[str] | None = None, model: str | None = None
) -> list[Loaded]:
    """Every (species, model) gene table of the atlas, or the chosen ones."""
    names = species or atlas.species_names()
    if not names:
        raise UserError(f"The atlas {atlas.root} holds no species; index a proteome first.")
    loaded: list[Loaded] = []
    for name in names:
        if name not in atlas.species_names():
            raise UserError(f"Species '{name}' is not in the atlas {atlas.root} ({', '.join(atlas.species_names())}).")
        models = [model] if model else atlas.models_for(name)
        for chosen in models:
            genes = read_table(atlas.genes(name, chosen), GENES)
            loaded.append(load_genes(store, chosen, name, genes))
    return loaded
