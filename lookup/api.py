"""HTTP API over the lookup functions (FastAPI, OpenAPI at /openapi.json, docs at /docs).

The same `lookup.query` functions as the CLI answer every request; a user mistake (unknown gene
or species, missing mapping) is a 404 with the CLI's message, malformed input a 422 from the
models in `schemas.api`, and a server without embedding weights answers sequence queries 503.
Store calls are serialised with a lock: the embedded engine is one process's and its Python
binding is not documented as thread-safe, while FastAPI runs handlers in a thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

import numpy as np
import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from lookup.query import Hit, check_species, choose_model, homologs_of_gene, homologs_of_vectors
from lookup.store import GeneStore, describe
from orthovec import __version__
from schemas import api
from schemas.atlas import Atlas
from schemas.errors import UserError
from schemas.tables import MAPPING, RELATIONS, read_table

SequenceEmbedder = Callable[[list[str], str], np.ndarray]
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)
NOT_FOUND = {404: {"model": api.ErrorResponse}}


def _hit(hit: Hit) -> api.HitModel:
    return api.HitModel(**{name: getattr(hit, name) for name in api.HitModel.model_fields})


def create_app(
    store: GeneStore,
    atlas: Atlas | None = None,
    *,
    sequence_embedder: SequenceEmbedder | None = None,
    api_key: str | None = None,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    lock = threading.Lock()

    def require_key(key: Annotated[str | None, Security(API_KEY_HEADER)]) -> None:
        if api_key is not None and key != api_key:
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")

    app = FastAPI(
        title="orthovec",
        version=__version__,
        description="Cross-species homologs from protein language model gene vectors.",
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.get("/health", response_model=api.HealthResponse)
    def health() -> api.HealthResponse:
        with lock:
            return api.HealthResponse(status="ok", store=describe(store), models=store.models())

    secured = [Depends(require_key)]

    @app.get("/species", response_model=list[api.SpeciesModel], dependencies=secured)
    def species() -> list[api.SpeciesModel]:
        with lock:
            return [
                api.SpeciesModel(species=name, model=model, genes=count)
                for model in store.models()
                for name, count in sorted(store.species_counts(model).items())
            ]

    @app.get("/homologs", response_model=api.HomologsResponse, responses=NOT_FOUND, dependencies=secured)
    def homologs(
        gene: Annotated[str, Query(min_length=1, max_length=100)],
        from_species: Annotated[str, Query(alias="from", min_length=1, max_length=100)],
        to: Annotated[list[str] | None, Query(max_length=50)] = None,
        k: Annotated[int, Query(ge=1, le=api.MAX_K)] = 10,
        model: Annotated[str | None, Query(max_length=100)] = None,
    ) -> api.HomologsResponse:
        with lock:
            chosen = choose_model(store, model)
            hits = homologs_of_gene(store, gene, from_species, to or None, k, chosen)
        first = hits[0] if hits else None
        query = api.GeneModel(
            species=from_species,
            gene_id=first.query_gene_id if first else gene,
            gene_symbol=first.query_gene_symbol if first else None,
        )
        return api.HomologsResponse(query=query, model=chosen, hits=[_hit(h) for h in hits])

    @app.post(
        "/homologs/sequence",
        response_model=api.SequenceResponse,
        responses={**NOT_FOUND, 503: {"model": api.ErrorResponse}},
        dependencies=secured,
    )
    def homologs_of_sequences(body: api.SequenceQuery) -> api.SequenceResponse:
        if sequence_embedder is None:
            raise HTTPException(
                status_code=503,
                detail="This server embeds no sequences: start it with --weights PATH (the atlas's checkpoint).",
            )
        with lock:
            chosen = choose_model(store, body.model)
            check_species(store, chosen, body.to)
        try:
            vectors = sequence_embedder([s.sequence for s in body.sequences], chosen)
        except UserError as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
        with lock:
            results = homologs_of_vectors(store, chosen, vectors, body.to, body.k)
        return api.SequenceResponse(
            model=chosen,
            results=[
                api.SequenceHits(id=s.id, hits=[_hit(h) for h in hits])
                for s, hits in zip(body.sequences, results, strict=True)
            ],
        )

    @app.get(
        "/mappings/{species_a}/{species_b}", response_model=api.MappingPage, responses=NOT_FOUND, dependencies=secured
    )
    def mappings(
        species_a: str,
        species_b: str,
        model: Annotated[str | None, Query(max_length=100)] = None,
        relation: Annotated[str | None, Query(pattern="^(" + "|".join(RELATIONS) + ")$")] = None,
        min_score: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=api.MAX_PAGE)] = 100,
    ) -> api.MappingPage:
        if atlas is None:
            raise UserError("This server has no atlas directory, so no mapping tables (start it with --atlas).")
        with lock:
            chosen = choose_model(store, model)
        try:
            path = atlas.mapping(chosen, species_a, species_b)
        except UserError as error:
            raise UserError(f"No mapping {species_a} → {species_b}: {error}") from error
        if not path.is_file():
            raise UserError(
                f"No mapping {species_a} → {species_b} for {chosen} ({path}); "
                f"make it with `orthovec map {species_a} {species_b}`."
            )
        rows = pl.from_arrow(read_table(path, MAPPING))
        assert isinstance(rows, pl.DataFrame)
        if relation:
            rows = rows.filter(pl.col("relation") == relation)
        if min_score is not None:
            rows = rows.filter(pl.col("score") >= min_score)
        page = rows.slice(offset, limit).select(list(api.MappingRow.model_fields))
        return api.MappingPage(
            species_a=species_a,
            species_b=species_b,
            model=chosen,
            total=rows.height,
            offset=offset,
            limit=limit,
            rows=[api.MappingRow(**row) for row in page.iter_rows(named=True)],
        )

    return app
