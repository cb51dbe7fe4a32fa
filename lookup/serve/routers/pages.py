"""The pages for people: the lookup page at /, Swagger UI at /docs, ReDoc at /redoc.

All three are files inside the installed package, with no inline script and nothing from a CDN,
so they work on machines with no internet (HPC clusters, clinical networks) and under the
server's Content-Security-Policy. They hold no data: they stay open when the server has an API key
(the page asks for the key and sends it with its data requests).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

#: The lookup page and the docs pages: HTML, CSS and JS shipped as package data (no build step).
WEB = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
def lookup_page() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html")


@router.get("/docs")
def swagger_ui() -> FileResponse:
    return FileResponse(WEB / "docs.html", media_type="text/html")


@router.get("/redoc")
def redoc() -> FileResponse:
    return FileResponse(WEB / "redoc.html", media_type="text/html")
