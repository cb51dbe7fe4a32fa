"""`GET /health`: liveness and readiness for probes (no API key needed, and no server paths shown
to a client without one)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orthovec.lookup.serve.state import State, client_key
from orthovec.schemas import api

router = APIRouter()


@router.get("/health", response_model=api.HealthResponse, responses={503: {"model": api.HealthResponse}})
def health(state: State, request: Request) -> Any:
    """200 while the store answers; 503 with `status: unavailable` when it does not."""
    key = client_key(request)
    try:
        with state.lock:
            models = state.store.models() if state.store is not None else []
    except Exception as error:  # any engine failure means "not ready", which is what a probe asks
        body = api.HealthResponse(
            status="unavailable", store=state.store_name(key), models=[], detail=state.shown(str(error), key)
        )
        return JSONResponse(status_code=503, content=body.model_dump())
    return api.HealthResponse(status="ok", store=state.store_name(key), models=models)
