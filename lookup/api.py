"""HTTP API over the lookup functions (FastAPI; OpenAPI at /openapi.json, docs at /docs).

The same `orthovec.lookup.query` functions as the CLI answer every request. Status codes:
404 for something that is not there (species, gene, model, mapping table; the body is the CLI's
message with close matches), 400 for a request that names several things (an ambiguous gene
symbol, no `model` while the store holds several), 422 for malformed input and requests over the
`ApiLimits`, 413 for an oversized body, 401 for a missing API key, 503 when sequences cannot be
embedded (no --weights) or the Qdrant server does not answer. A 500 is a bug.

Concurrency: FastAPI runs these sync handlers in a thread pool. Qdrant Edge (a Rust engine with
its own locking) and the remote qdrant-client (an httpx client) take concurrent reads: 8 threads
get the serial answers (tests/test_api.py; 5 ms → 4.5 ms per query on 2 cores, more on bigger
machines). qdrant-client's local mode (`local:PATH`, `:memory:`) is a pure-Python test engine
with no thread-safety promise, so calls on it, and on any other store, are serialised by a lock.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime, and
# they use this factory's local limits and request model.
import contextlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from orthovec.lookup.query import Hit, check_species, choose_model, homologs_of_gene, homologs_of_vectors
from orthovec.lookup.store import EdgeStore, GeneStore, ServerStore, describe
from orthovec.schemas import api
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import MAPPING, RELATIONS, read_table
from qdrant_client.http.exceptions import ResponseHandlingException

from orthovec import __version__

#: sequences, model -> (len(sequences), dim) vectors comparable with the store's gene vectors.
SequenceEmbedder = Callable[[list[str], str], np.ndarray]

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when the server has a key")
ERROR = {"model": api.ErrorResponse}
NO_WEIGHTS = (
    "This server embeds no sequences: restart it with `orthovec serve --weights PATH` (the ESM-2 "
    "checkpoint the atlas was indexed with) to enable POST /homologs/sequence. Gene queries "
    "(GET /homologs) work without."
)
#: Parsed mapping tables kept in memory (a 20k x 20k top-k table is a few MB).
MAPPING_CACHE_SIZE = 8
DEFAULT_LIMITS = api.ApiLimits()


class EmbedderUnavailable(Exception):
    """The server cannot embed sequences right now (its weights failed to load): answered with 503."""


def _is_local_mode(store: GeneStore) -> bool:
    return isinstance(store, ServerStore) and (store.url == ":memory:" or store.url.startswith("local:"))


def store_lock(store: GeneStore) -> contextlib.AbstractContextManager[Any]:
    """A lock for stores whose engine is not safe under concurrent calls, else a no-op."""
    if isinstance(store, EdgeStore) or (isinstance(store, ServerStore) and not _is_local_mode(store)):
        return contextlib.nullcontext()
    return threading.Lock()


def _hit(hit: Hit) -> api.HitModel:
    return api.HitModel(**{name: getattr(hit, name) for name in api.HitModel.model_fields})


def _unprocessable(message: str, where: list[str]) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, so clients parse one format."""
    return HTTPException(status_code=422, detail=[{"loc": where, "msg": message, "type": "value_error"}])


class MappingTables:
    """Mapping tables read once and kept while their file is unchanged (a re-run of `orthovec map`
    replaces the file atomically, which changes its mtime, so the next request reads the new one)."""

    def __init__(self, size: int = MAPPING_CACHE_SIZE) -> None:
        self.size = size
        self._tables: OrderedDict[Path, tuple[tuple[int, int], pl.DataFrame]] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, path: Path) -> pl.DataFrame:
        stat = path.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._tables.get(path)
            if cached and cached[0] == signature:
                self._tables.move_to_end(path)
                return cached[1]
            frame = pl.from_arrow(read_table(path, MAPPING))
            assert isinstance(frame, pl.DataFrame)
            # JSON has no NaN: a missing score is null.
            frame = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))
            self._tables[path] = (signature, frame)
            while len(self._tables) > self.size:
                self._tables.popitem(last=False)
            return frame


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` (declared Content-Length) with 413 before reading them."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > self.max_bytes:
                response = JSONResponse(
                    status_code=413,
                    content={"detail": f"Request body over {self.max_bytes:,} bytes; send fewer sequences."},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    store: GeneStore,
    atlas: Atlas | None = None,
    *,
    sequence_embedder: SequenceEmbedder | None = None,
    api_key: str | None = None,
    cors_origins: list[str] | None = None,
    limits: api.ApiLimits = DEFAULT_LIMITS,
) -> FastAPI:
    """The HTTP API over an open store (held, not closed, by the app: the caller owns it)."""
    lock = store_lock(store)
    embed_lock = threading.Lock()  # one embedding batch at a time: a model's activations are large
    mapping_tables = MappingTables()
    with lock:
        # Open every shard now: lazily opening one from two request threads at once would race.
        for model in store.models():
            store.species_counts(model)

    def require_key(key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> None:
        if api_key is not None and not (key and secrets.compare_digest(key.encode(), api_key.encode())):
            raise HTTPException(status_code=401, detail="Missing or wrong X-API-Key header.")

    app = FastAPI(
        title="orthovec",
        version=__version__,
        description=(
            "Cross-species homologs from ESM-2 gene vectors: nearest genes of a gene or of raw protein "
            'sequences, and pages of precomputed mapping tables. Errors are `{"detail": ...}` with a '
            "message saying what to change."
        ),
    )
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )

    @app.exception_handler(UserError)
    async def not_found(request: Request, error: UserError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.exception_handler(EmbedderUnavailable)
    async def cannot_embed(request: Request, error: EmbedderUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.exception_handler(ResponseHandlingException)
    async def store_down(request: Request, error: ResponseHandlingException) -> JSONResponse:
        detail = f"The vector store ({describe(store)}) did not answer: {error}. Try again later."
        return JSONResponse(status_code=503, content={"detail": detail})

    def use_model(requested: str | None) -> str:
        if requested is None and len(models := store.models()) > 1:
            raise HTTPException(
                status_code=400,
                detail=f"The store holds several models ({', '.join(models)}); choose one with `model=`.",
            )
        return choose_model(store, requested)

    def gene_error_status(model: str, from_species: str, to: list[str] | None, gene: str) -> int:
        """Which of homologs_of_gene's user errors happened (error path only): an ambiguous name is 400."""
        try:
            known = check_species(store, model, [from_species, *(to or [])])
        except UserError:
            return 404
        has_targets = bool(to) or any(name != from_species for name in known)
        return 400 if has_targets and store.find_genes(model, from_species, gene) else 404

    secured = [Depends(require_key)]
    auth = {401: ERROR} if api_key is not None else {}
    ModelParam = Annotated[
        str | None, Query(pattern=api.NAME_PATTERN, max_length=100, description="default: the only model")
    ]

    @app.get("/health", response_model=api.HealthResponse, responses={503: {"model": api.HealthResponse}})
    def health() -> Any:
        """Liveness and readiness: 200 while the store answers (no API key needed)."""
        try:
            with lock:
                models = store.models()
        except Exception as error:  # any engine failure means "not ready", which is what a probe asks
            body = api.HealthResponse(status="unavailable", store=describe(store), models=[], detail=str(error))
            return JSONResponse(status_code=503, content=body.model_dump())
        return api.HealthResponse(status="ok", store=describe(store), models=models)

    @app.get("/species", response_model=api.SpeciesResponse, responses=auth, dependencies=secured)
    def species() -> api.SpeciesResponse:
        """Every species per model, with its number of genes."""
        with lock:
            rows = [
                api.SpeciesCount(species=name, model=model, genes=count)
                for model in store.models()
                for name, count in sorted(store.species_counts(model).items())
            ]
        return api.SpeciesResponse(species=rows)

    @app.get(
        "/homologs",
        response_model=api.HomologsResponse,
        responses={400: ERROR, 404: ERROR, **auth},
        dependencies=secured,
    )
    def homologs(
        gene: Annotated[str, Query(min_length=1, max_length=200, description="symbol or ID, any case")],
        from_species: Annotated[str, Query(alias="from", pattern=api.NAME_PATTERN, max_length=100)],
        to: Annotated[
            list[api.Name] | None,
            Query(max_length=limits.max_targets, description="target species (repeat; default: all others)"),
        ] = None,
        k: Annotated[int, Query(ge=1, le=limits.max_k)] = 10,
        model: ModelParam = None,
    ) -> api.HomologsResponse:
        """Top-k homolog candidates of one gene in each target species."""
        with lock:
            chosen = use_model(model)
            try:
                hits = homologs_of_gene(store, gene, from_species, to or None, k, chosen)
            except UserError as error:
                raise HTTPException(gene_error_status(chosen, from_species, to, gene), str(error)) from error
        first = hits[0] if hits else None
        query = api.GeneModel(
            species=from_species,
            gene_id=first.query_gene_id if first and first.query_gene_id else gene,
            gene_symbol=first.query_gene_symbol if first else None,
        )
        return api.HomologsResponse(query=query, model=chosen, hits=[_hit(h) for h in hits])

    SequenceQuery = api.sequence_query_model(limits)

    @app.post(
        "/homologs/sequence",
        response_model=api.SequenceResponse,
        responses={400: ERROR, 404: ERROR, 413: ERROR, 503: ERROR, **auth},
        dependencies=secured,
    )
    def homologs_of_sequences(body: SequenceQuery) -> api.SequenceResponse:  # type: ignore[valid-type]
        """Top-k genes per target species for raw protein sequences, embedded on the fly (no RBH flag)."""
        query: api.SequenceQuery = body  # type: ignore[assignment]
        if sequence_embedder is None:
            raise HTTPException(status_code=503, detail=NO_WEIGHTS)
        with lock:
            chosen = use_model(query.model)
            check_species(store, chosen, query.to)
        try:
            with embed_lock:
                vectors = sequence_embedder([s.sequence for s in query.sequences], chosen)
        except UserError as error:
            raise _unprocessable(str(error), ["body", "sequences"]) from error
        with lock:
            results = homologs_of_vectors(store, chosen, vectors, query.to, query.k)
        return api.SequenceResponse(
            model=chosen,
            results=[
                api.SequenceHits(id=s.id, hits=[_hit(h) for h in hits])
                for s, hits in zip(query.sequences, results, strict=True)
            ],
        )

    SpeciesPath = Annotated[str, PathParam(pattern=api.NAME_PATTERN, max_length=100)]

    @app.get(
        "/mappings/{species_a}/{species_b}",
        response_model=api.MappingPage,
        responses={400: ERROR, 404: ERROR, **auth},
        dependencies=secured,
    )
    def mappings(
        species_a: SpeciesPath,
        species_b: SpeciesPath,
        model: ModelParam = None,
        relation: Annotated[str | None, Query(pattern="^(" + "|".join(RELATIONS) + ")$")] = None,
        min_score: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.max_page)] = 100,
    ) -> api.MappingPage:
        """A page of the mapping table species_a → species_b (written by `orthovec map`), filtered."""
        if atlas is None:
            raise UserError("This server has no atlas directory, so no mapping tables (start it with --atlas).")
        with lock:
            chosen = use_model(model)
        path = atlas.mapping(chosen, species_a, species_b)
        if not path.is_file():
            reverse = atlas.mapping(chosen, species_b, species_a)
            hint = f" The reverse table exists: GET /mappings/{species_b}/{species_a}." if reverse.is_file() else ""
            raise UserError(
                f"No {chosen} mapping table {species_a} → {species_b} ({path}). Make it with "
                f"`orthovec map {species_a} {species_b} --model {chosen}`.{hint}"
            )
        rows = mapping_tables.rows(path)
        if relation:
            rows = rows.filter(pl.col("relation") == relation)
        if min_score is not None:
            # Compare as float64: a float32 score of 0.95 is 0.94999999, and JSON shows it so.
            rows = rows.filter(pl.col("score").cast(pl.Float64) >= min_score)
        page = rows.slice(offset, limit).select([c for c in api.MappingRow.model_fields if c in rows.columns])
        return api.MappingPage(
            species_a=species_a,
            species_b=species_b,
            model=chosen,
            total=rows.height,
            offset=offset,
            limit=limit,
            next_offset=offset + limit if offset + limit < rows.height else None,
            rows=[api.MappingRow(**row) for row in page.iter_rows(named=True)],
        )

    return app
