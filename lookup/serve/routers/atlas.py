"""What the atlas holds: `GET /species`, `GET /atlas` (provenance, species, mapping tables) and
`GET /genes` (suggestions for a search box)."""

from __future__ import annotations

import difflib
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from orthovec.core.version import __version__
from orthovec.lookup.homologs import Catalogue, table_evidence
from orthovec.lookup.query import GeneRef
from orthovec.lookup.sequence import atlas_embedding_settings
from orthovec.lookup.serve.state import ServeState, State, require_key
from orthovec.schemas import api

router = APIRouter(dependencies=[Depends(require_key)])
ERROR = {"model": api.ErrorResponse}


def catalogue(state: ServeState) -> Catalogue:
    return Catalogue(state.atlas, state.store, state.reader)


def mapping_tables(state: ServeState) -> list[api.MappingPair]:
    """Every `orthovec map` table of the atlas (per model folder, and mmseqs2), with its evidence."""
    base = state.atlas.root / "mappings"
    found = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for path in sorted(folder.glob("*__*.parquet")):
            names = path.stem.split("__")
            if len(names) != 2 or path != state.atlas.mapping(folder.name, *names):
                continue  # groups__a__b__c tables, names that are not species
            evidence = table_evidence(state.reader.provenance(path), folder.name)
            found.append(api.MappingPair(species_a=names[0], species_b=names[1], model=folder.name, evidence=evidence))
    return found


@router.get("/species", response_model=api.SpeciesResponse)
def species(state: State) -> api.SpeciesResponse:
    """Every species per model, with its number of genes; model null for a species indexed without embeddings."""
    with state.lock:
        rows = catalogue(state).counts()
    return api.SpeciesResponse(species=[api.SpeciesCount(species=s, model=m, genes=n) for s, m, n in rows])


@router.get("/atlas", response_model=api.AtlasResponse)
def atlas(state: State) -> api.AtlasResponse:
    """What this server holds and how it was made: per model its provenance (weights sha256, layer,
    pooling, precision), species with gene counts and mapping tables; every species and mapping
    table; and whether it answers sequences (MMseqs2, and embedding with weights)."""
    with state.lock:
        counts = catalogue(state).counts()
    tables = mapping_tables(state)
    models = []
    for model in sorted({m for _, m, _ in counts if m is not None}):
        with state.reader.reading():
            settings = atlas_embedding_settings(state.atlas, model)
        models.append(
            api.ModelInfo.model_validate(
                {
                    "model": model,
                    **{key: settings.get(key) for key in api.PROVENANCE_FIELDS},
                    "species": [api.SpeciesCount(species=s, model=m, genes=n) for s, m, n in counts if m == model],
                    "mappings": [t for t in tables if t.model == model],
                }
            )
        )
    return api.AtlasResponse(
        orthovec=__version__,
        store=state.store_name(state.api_key),  # past require_key, the client holds the key if there is one
        sequence_queries=state.embed is not None or state.search is not None,
        sequence_embedding=state.embed is not None,
        models=models,
        species=[api.SpeciesCount(species=s, model=m, genes=n) for s, m, n in counts],
        mappings=tables,
    )


def suggest_genes(genes: list[GeneRef], text: str, limit: int) -> list[GeneRef]:
    """Genes whose symbol or ID starts with `text` (any case), then those containing it, then close
    spellings: what a search box offers while someone types a gene name."""
    wanted = text.upper()
    keyed = sorted(((g.gene_symbol or g.gene_id).upper(), g.gene_id, g) for g in genes)
    starts = [g for key, gene_id, g in keyed if key.startswith(wanted) or gene_id.upper().startswith(wanted)]
    contains = (
        [g for key, gene_id, g in keyed if wanted in key or wanted in gene_id.upper()] if len(starts) < limit else []
    )
    chosen = list(dict.fromkeys(starts + contains))[:limit]
    if not chosen:
        by_key = {key: g for key, _, g in keyed}
        chosen = [by_key[key] for key in difflib.get_close_matches(wanted, list(by_key), n=limit, cutoff=0.6)]
    return chosen


@router.get("/genes", response_model=api.GeneSuggestions, responses={404: ERROR})
def genes(
    state: State,
    species: Annotated[api.Name, Query()],
    q: Annotated[api.Text, Query(min_length=1, max_length=200, description="start of a symbol or ID, any case")],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    model: Annotated[api.Name | None, Query(description="default: the model the species is held under")] = None,
) -> api.GeneSuggestions:
    """Genes of one species whose symbol or ID starts with (then contains) `q`: suggestions for a search box."""
    with state.lock:
        known = catalogue(state)
        known.check([species])
        chosen = known.choose_model(model, species, [])
        listed = state.gene_list(known, chosen, species)
    found = suggest_genes(listed, q, limit)
    return api.GeneSuggestions(
        genes=[api.GeneModel(species=species, gene_id=g.gene_id, gene_symbol=g.gene_symbol) for g in found]
    )
