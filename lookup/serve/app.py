"""The HTTP API over the homolog service (FastAPI; OpenAPI at /openapi.json, docs at /docs and
/redoc, a lookup page at /).

`create_app` puts one `ServeState` (the store, the atlas, the limits, how sequences are answered)
on `app.state.orthovec` and includes one router per resource (`routers/`): pages, health, the
atlas (species, provenance, genes), homologs, mappings. Handlers reach the state through FastAPI
dependencies, so each can be read alone. `guards` holds the body limit, the content policy and
the error answers.

Everything a browser loads (the page, Swagger UI, ReDoc) is served from the installed package, so
the docs and the page work on machines with no internet (HPC clusters, clinical networks).

Concurrency: FastAPI runs these sync handlers in a thread pool. Qdrant Edge and the remote
qdrant-client take concurrent reads (8 threads get the serial answers, tests/test_api.py); other
engines are serialised by a lock (`state.store_lock`).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from orthovec.core.version import __version__
from orthovec.lookup.homologs import SequenceSearch
from orthovec.lookup.sequence import SequenceEmbedder
from orthovec.lookup.serve.guards import BodySizeLimit, SameOriginOnly, add_error_handlers
from orthovec.lookup.serve.routers import atlas as atlas_routes
from orthovec.lookup.serve.routers import health, homologs, mappings, pages
from orthovec.lookup.serve.state import ServeState
from orthovec.lookup.store import GeneStore
from orthovec.schemas.api import ApiLimits
from orthovec.schemas.atlas import Atlas

#: Swagger UI and ReDoc, as files inside the fastapi-offline package (no CDN).
DOCS_FILES = Path(fastapi_offline.__file__).parent / "static"
DEFAULT_LIMITS = ApiLimits()


def create_app(
    store: GeneStore | None,
    atlas: Atlas,
    *,
    sequence_embedder: SequenceEmbedder | None = None,
    sequence_search: SequenceSearch | None = None,
    api_key: str | None = None,
    cors_origins: list[str] | None = None,
    limits: ApiLimits = DEFAULT_LIMITS,
) -> FastAPI:
    """The HTTP API over an open store and its atlas (held, not closed, by the app: the caller owns
    it); `store` None serves an atlas indexed without embeddings from its tables."""
    app = FastAPI(
        title="orthovec",
        version=__version__,
        description=(
            "Cross-species homologs from every source of evidence an orthovec atlas holds (mapping tables, "
            "MMseqs2 alignments, ESM-2 gene vectors): homologs of a gene or of raw protein sequences, and "
            'pages of the mapping tables. Errors are `{"detail": ...}` with a message saying what to change. '
            "A lookup page for people is at `/`."
        ),
        docs_url=None,  # served as files by `routers.pages`, with no inline script
        redoc_url=None,
    )
    app.state.orthovec = ServeState(
        store, atlas, limits, embed=sequence_embedder, search=sequence_search, api_key=api_key
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
    add_error_handlers(app)
    app.mount("/web", StaticFiles(directory=pages.WEB), name="web")
    app.mount("/static-offline-docs", StaticFiles(directory=DOCS_FILES), name="docs-files")
    for router in (
        pages.router,
        health.router,
        atlas_routes.router,
        homologs.router(limits),
        mappings.router(limits),
    ):
        app.include_router(router)
    return app
