"""What stands between a client and the handlers: body size, the pages' content policy, and how
every error becomes an answer.

Statuses come from the error's kind through one table (`orthovec.schemas.errors.http_status`):
404 for something that is not there, 400 for a request that names several things, 422 for
malformed input and requests over the `ApiLimits`, 413 for an oversized body, 401 for a missing
API key, 503 when the Qdrant server does not answer. A damaged table of the server's own atlas is
a 500 with a log line naming the file: the client did nothing wrong. Any other 500 is a bug.
Server paths in a message are shown only to clients holding the API key.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from qdrant_client.http.exceptions import ResponseHandlingException

from orthovec.core.logs import get_logger
from orthovec.lookup.homologs import DamagedTable
from orthovec.lookup.serve.state import ServeState, client_key
from orthovec.schemas.errors import UserError, http_status

logger = get_logger("lookup.serve")

#: Browsers may load and fetch only from this server, and run only its script files (no inline
#: script anywhere: the page's, Swagger UI's and ReDoc's start-up code are files too). Swagger UI
#: and ReDoc still need inline styles and data: images; ReDoc's bundle also shows a logo from
#: cdn.redoc.ly, which this blocks.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'"
)


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


def json_safe(value: Any) -> Any:
    """`value` as JSON can carry it: a non-finite float spelled as a string (JSON has no inf or
    NaN) and a lone UTF-16 surrogate escaped (no text encoding holds one), so a validation error
    that echoes `"k": 1e999` or `"id": "\\ud800"` back does not fail while being written (a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _state(request: Request) -> ServeState:
    state: ServeState = request.app.state.orthovec
    return state


def add_error_handlers(app: FastAPI) -> None:
    """Each error kind's answer (see the module docstring)."""

    @app.exception_handler(DamagedTable)
    async def damaged(request: Request, error: DamagedTable) -> JSONResponse:
        logger.error("A table of the served atlas is damaged (%s %s): %s", request.method, request.url.path, error)
        detail = "A table of this server's atlas cannot be read; the server's log names it. Tell its operator."
        return JSONResponse(status_code=500, content={"detail": detail})

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError) -> JSONResponse:
        detail = _state(request).shown(str(error), client_key(request))
        return JSONResponse(status_code=http_status(error), content={"detail": json_safe(detail)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(error.errors()))})

    @app.exception_handler(ResponseHandlingException)
    async def store_down(request: Request, error: ResponseHandlingException) -> JSONResponse:
        state = _state(request)
        detail = f"The vector store ({state.store_name(client_key(request))}) did not answer: {error}. Try again later."
        return JSONResponse(status_code=503, content={"detail": state.shown(detail, client_key(request))})
