"""HTTP API over the lookup functions (FastAPI; OpenAPI at /openapi.json, docs at /docs and /redoc,
a lookup page at /).

The same `orthovec.lookup.query` functions as the CLI answer every request, and their typed
errors choose the status through one table (`orthovec.schemas.errors.http_status`): 404 for
something that is not there (species, gene, model, mapping table; the body is the CLI's message
with close matches), 400 for a request that names several things (an ambiguous gene symbol, no
`model` while the store holds several), 422 for malformed input and requests over the `ApiLimits`,
413 for an oversized body, 401 for a missing API key, 503 when sequences cannot be embedded (no
--weights) or the Qdrant server does not answer. A 500 is a bug.

Everything a browser loads (the page, Swagger UI, ReDoc) is served from the installed package, so
the docs and the page work on machines with no internet (HPC clusters, clinical networks).

Concurrency: FastAPI runs these sync handlers in a thread pool. Qdrant Edge (a Rust engine with
its own locking) and the remote qdrant-client (an httpx client) take concurrent reads: 8 threads
get the serial answers (tests/test_api.py; 5 ms → 4.5 ms per query on 2 cores, more on bigger
machines). qdrant-client's local mode (`local:PATH`, `:memory:`) is a pure-Python test engine
with no thread-safety promise, so calls on it, and on any other store, are serialised by a lock.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime, and
# they use this factory's local limits and request model.
import contextlib
import difflib
import math
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
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from qdrant_client.http.exceptions import ResponseHandlingException

from orthovec.core.version import __version__
from orthovec.lookup.query import Hit, check_species, choose_model, homologs_of_gene, homologs_of_vectors
from orthovec.lookup.sequence import atlas_embedding_settings
from orthovec.lookup.store import EdgeStore, GeneStore, ServerStore, describe
from orthovec.schemas import api
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Ambiguous, NotFound, Unavailable, UserError, http_status
from orthovec.schemas.tables import ALIGNMENT, MAPPING, RELATIONS, TableSpec, read_table

#: sequences, model -> (len(sequences), dim) vectors comparable with the store's gene vectors.
SequenceEmbedder = Callable[[list[str], str], np.ndarray]

#: The lookup page: HTML, CSS and JS shipped as package data (no CDN, no build step).
WEB = Path(__file__).parent / "web"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when the server has a key")
#: FastAPI's `responses=` entries: status -> OpenAPI response description.
Responses = dict[int | str, dict[str, Any]]
ERROR: dict[str, Any] = {"model": api.ErrorResponse}
NO_WEIGHTS = (
    "This server embeds no sequences: restart it with `orthovec serve --weights PATH` (the ESM-2 "
    "checkpoint the atlas was indexed with) to enable POST /homologs/sequence. Gene queries "
    "(GET /homologs) work without."
)
#: Browsers may load and fetch only from this server. Swagger UI and ReDoc need inline scripts and
#: styles and data: images; ReDoc's bundle also shows a logo from cdn.redoc.ly, which this blocks.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'"
)
#: Parsed mapping and alignment tables kept in memory (a 20k x 20k top-k table is a few MB).
TABLE_CACHE_SIZE = 8
DEFAULT_LIMITS = api.ApiLimits()


def _is_local_mode(store: GeneStore) -> bool:
    return isinstance(store, ServerStore) and (store.url == ":memory:" or store.url.startswith("local:"))


def store_lock(store: GeneStore) -> contextlib.AbstractContextManager[Any]:
    """A lock for stores whose engine is not safe under concurrent calls, else a no-op."""
    if isinstance(store, EdgeStore) or (isinstance(store, ServerStore) and not _is_local_mode(store)):
        return contextlib.nullcontext()
    return threading.Lock()


def _hit(hit: Hit) -> api.HitModel:
    return api.HitModel.model_validate(hit.to_dict())  # the query_* keys are the response's `query`


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float spelled as a string: JSON has no inf or NaN, and a
    validation error that echoes `"k": 1e999` back must not fail while being written (a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def mapping_pairs(atlas: Atlas, model: str) -> list[tuple[str, str]]:
    """(species_a, species_b) of every pairwise mapping table `orthovec map` wrote for `model`."""
    folder = atlas.mapping(model, "a", "b").parent
    pairs = []
    for path in sorted(folder.glob("*__*.parquet")) if folder.is_dir() else []:
        names = path.stem.split("__")
        if len(names) == 2 and path == atlas.mapping(model, *names):  # not groups__a__b__c tables
            pairs.append((names[0], names[1]))
    return pairs


def suggest_genes(genes: list[tuple[str, str, str | None]], text: str, limit: int) -> list[tuple[str, str | None]]:
    """Genes whose symbol or ID starts with `text` (any case), then those containing it, then close
    spellings: what a search box offers while someone types a gene name."""
    wanted = text.upper()
    starts = [g for g in genes if g[0].startswith(wanted) or g[1].upper().startswith(wanted)]
    contains = [g for g in genes if wanted in g[0] or wanted in g[1].upper()] if len(starts) < limit else []
    chosen = list(dict.fromkeys(starts + contains))[:limit]
    if not chosen:
        by_key = {g[0]: g for g in genes}
        chosen = [by_key[key] for key in difflib.get_close_matches(wanted, list(by_key), n=limit, cutoff=0.6)]
    return [(gene_id, symbol) for _, gene_id, symbol in chosen]


class CachedTables:
    """Tables of one spec read once and kept while their file is unchanged (a re-run of `orthovec
    map` or `align` replaces the file atomically, which changes its mtime, so the next request reads
    the new one)."""

    def __init__(self, spec: TableSpec, size: int = TABLE_CACHE_SIZE) -> None:
        self.spec, self.size = spec, size
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
            frame = pl.from_arrow(read_table(path, self.spec))
            assert isinstance(frame, pl.DataFrame)
            # JSON has no NaN: a missing score is null.
            frame = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))
            self._tables[path] = (signature, frame)
            while len(self._tables) > self.size:
                self._tables.popitem(last=False)
            return frame


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413: at once when Content-Length declares more,
    otherwise as soon as the bytes actually received pass the limit, so a chunked upload (which
    declares no length) is cut off there instead of being buffered whole.

    Starlette's own `max_body_size` does the counting too, but answers in plain text; this keeps
    the API's one error shape, `{"detail": ...}`.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.detail = f"Request body over {max_bytes:,} bytes; send fewer sequences."

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse(status_code=413, content={"detail": self.detail})(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI re-raises an HTTPException met while reading the body, and its handler
                # writes the usual JSON error; the rest of the upload is never read.
                raise HTTPException(status_code=413, detail=self.detail)
            return message

        await self.app(scope, counting_receive, send)


class SameOriginOnly:
    """Add the Content-Security-Policy header to every response: the pages (/, /docs, /redoc) then
    work offline by construction, since the browser refuses anything from another host."""

    def __init__(self, app: Any) -> None:
        self.app, self.header = app, (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_with_policy(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_policy if scope["type"] == "http" else send)


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
    mapping_tables = CachedTables(MAPPING)
    alignment_tables = CachedTables(ALIGNMENT)
    gene_lists: dict[tuple[str, str, int], list[tuple[str, str, str | None]]] = {}
    with lock:
        # Open every shard now: lazily opening one from two request threads at once would race.
        for model in store.models():
            store.species_counts(model)

    def require_key(key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> None:
        if api_key is not None and not (key and secrets.compare_digest(key.encode(), api_key.encode())):
            raise HTTPException(status_code=401, detail="Missing or wrong X-API-Key header.")

    # FastAPIOffline serves Swagger UI and ReDoc from files inside its package instead of a CDN.
    app = FastAPIOffline(
        title="orthovec",
        version=__version__,
        description=(
            "Cross-species homologs from ESM-2 gene vectors: nearest genes of a gene or of raw protein "
            'sequences, and pages of precomputed mapping tables. Errors are `{"detail": ...}` with a '
            "message saying what to change. A lookup page for people is at `/`."
        ),
        swagger_ui_parameters={"validatorUrl": None},  # the default badge asks validator.swagger.io
    )
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(SameOriginOnly)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError) -> JSONResponse:
        return JSONResponse(status_code=http_status(error), content={"detail": str(error)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(error.errors()))})

    @app.exception_handler(ResponseHandlingException)
    async def store_down(request: Request, error: ResponseHandlingException) -> JSONResponse:
        detail = f"The vector store ({describe(store)}) did not answer: {error}. Try again later."
        return JSONResponse(status_code=503, content={"detail": detail})

    def with_alignments(query: api.GeneModel, hits: list[Hit]) -> list[api.HitModel]:
        """The hits, with the identity and coverages MMseqs2 found between the query gene and each
        hit when `orthovec align` ran for the two species (its table holds both directions)."""
        shown = [_hit(h) for h in hits]
        if atlas is None:
            return shown
        for target in {h.species for h in shown}:
            forward = atlas.alignment(query.species, target)
            path, (q, t) = (forward, "ab") if forward.is_file() else (atlas.alignment(target, query.species), "ba")
            if not path.is_file():
                continue
            rows = alignment_tables.rows(path).filter(pl.col(f"gene_id_{q}") == query.gene_id)
            evidence = {
                row[f"gene_id_{t}"]: (row["identity"], row[f"coverage_{q}"], row[f"coverage_{t}"])
                for row in rows.iter_rows(named=True)
            }
            for hit in shown:
                if hit.species == target and hit.gene_id in evidence:
                    hit.identity, hit.coverage_query, hit.coverage_target = evidence[hit.gene_id]
        return shown

    def use_model(requested: str | None) -> str:
        if requested is None and len(models := store.models()) > 1:
            raise Ambiguous(f"The store holds several models ({', '.join(models)}); choose one with `model=`.")
        return choose_model(store, requested)

    secured = [Depends(require_key)]
    auth: Responses = {401: ERROR} if api_key is not None else {}
    ModelParam = Annotated[
        str | None, Query(pattern=api.NAME_PATTERN, max_length=100, description="default: the only model")
    ]

    app.mount("/web", StaticFiles(directory=WEB), name="web")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The lookup page (public like /docs; its data requests carry the API key when there is one)."""
        return FileResponse(WEB / "index.html", media_type="text/html")

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

    @app.get("/atlas", response_model=api.AtlasResponse, responses=auth, dependencies=secured)
    def atlas_info() -> api.AtlasResponse:
        """What this server holds and how it was made: per model its provenance (weights sha256, layer,
        pooling, precision), species with gene counts and mapping tables; and whether it embeds sequences."""
        with lock:
            counts = {model: store.species_counts(model) for model in store.models()}
        models = []
        for model, species_counts in counts.items():
            settings = atlas_embedding_settings(atlas, model) if atlas is not None else {}
            models.append(
                api.ModelInfo.model_validate(
                    {
                        "model": model,
                        **{key: settings.get(key) for key in api.PROVENANCE_FIELDS},
                        "species": [
                            api.SpeciesCount(species=name, model=model, genes=count)
                            for name, count in sorted(species_counts.items())
                        ],
                        "mappings": [
                            api.MappingPair(species_a=a, species_b=b)
                            for a, b in (mapping_pairs(atlas, model) if atlas is not None else [])
                        ],
                    }
                )
            )
        return api.AtlasResponse(
            orthovec=__version__, store=describe(store), sequence_queries=sequence_embedder is not None, models=models
        )

    @app.get("/genes", response_model=api.GeneSuggestions, responses={404: ERROR, **auth}, dependencies=secured)
    def genes(
        species: Annotated[str, Query(pattern=api.NAME_PATTERN, max_length=100)],
        q: Annotated[str, Query(min_length=1, max_length=200, description="start of a symbol or ID, any case")],
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        model: ModelParam = None,
    ) -> api.GeneSuggestions:
        """Genes of one species whose symbol or ID starts with (then contains) `q`: suggestions for a search box."""
        with lock:
            chosen = use_model(model)
            count = check_species(store, chosen, [species])[species]
            key = (chosen, species, count)  # a store that gained or lost genes is listed again
            if key not in gene_lists:
                gene_lists[key] = sorted(
                    ((g.gene_symbol or g.gene_id).upper(), g.gene_id, g.gene_symbol)
                    for g in store.list_genes(chosen, species)
                )
        found = suggest_genes(gene_lists[key], q, limit)
        return api.GeneSuggestions(
            genes=[api.GeneModel(species=species, gene_id=gene_id, gene_symbol=symbol) for gene_id, symbol in found]
        )

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
            hits = homologs_of_gene(store, gene, from_species, to or None, k, chosen)
        first = hits[0] if hits else None
        query = api.GeneModel(
            species=from_species,
            gene_id=first.query_gene_id if first and first.query_gene_id else gene,
            gene_symbol=first.query_gene_symbol if first else None,
        )
        return api.HomologsResponse(query=query, model=chosen, hits=with_alignments(query, hits))

    SequenceQuery = api.sequence_query_model(limits)

    @app.post(
        "/homologs/sequence",
        response_model=api.SequenceResponse,
        responses={400: ERROR, 404: ERROR, 413: ERROR, 503: ERROR, **auth},
        dependencies=secured,
    )
    # The body model is built per server (its bounds), so to mypy it is a variable, not a type.
    def homologs_of_sequences(body: SequenceQuery) -> api.SequenceResponse:  # type: ignore[valid-type]
        """Top-k genes per target species for raw protein sequences, embedded on the fly (no RBH flag)."""
        query: api.SequenceQuery = body
        if sequence_embedder is None:
            raise Unavailable(NO_WEIGHTS)
        with lock:
            chosen = use_model(query.model)
            check_species(store, chosen, query.to)
        with embed_lock:
            vectors = sequence_embedder([s.sequence for s in query.sequences], chosen)
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
        # Bounded so that offset + limit stays a valid row index (a 2**63 offset overflowed polars: a 500).
        offset: Annotated[int, Query(ge=0, le=limits.max_offset)] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.max_page)] = 100,
    ) -> api.MappingPage:
        """A page of the mapping table species_a → species_b (written by `orthovec map`), filtered."""
        if atlas is None:
            raise NotFound("This server has no atlas directory, so no mapping tables (start it with --atlas).")
        with lock:
            chosen = use_model(model)
        path = atlas.mapping(chosen, species_a, species_b)
        if not path.is_file():
            reverse = atlas.mapping(chosen, species_b, species_a)
            hint = f" The reverse table exists: GET /mappings/{species_b}/{species_a}." if reverse.is_file() else ""
            raise NotFound(
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
