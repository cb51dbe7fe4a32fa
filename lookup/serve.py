"""`orthovec serve`: the HTTP API on one store (embedded atlas or a Qdrant server)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import numpy as np

from lookup.api import SequenceEmbedder, create_app
from lookup.sequence import embedder_for_atlas
from lookup.store import describe, open_store
from orthovec.options import atlas_option
from schemas.atlas import Atlas
from schemas.errors import UserError


def sequence_embedder(atlas: Atlas, weights: Path, device: str) -> SequenceEmbedder:
    """Embedders per model, built on first use (loading ESM-2 takes seconds to minutes)."""
    built: dict[str, object] = {}

    def embed(sequences: list[str], model: str) -> np.ndarray:
        if model not in built:
            built[model] = embedder_for_atlas(atlas, model, weights, device)
        return built[model](sequences)  # type: ignore[operator]

    return embed


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@atlas_option
@click.option(
    "--qdrant-url", envvar="ORTHOVEC_QDRANT_URL", help="Serve from a Qdrant server instead of the atlas store."
)
@click.option(
    "--weights", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Enables sequence queries."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--api-key-env",
    metavar="NAME",
    help="Require header X-API-Key equal to this environment variable's value (except /health, /docs).",
)
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow browser calls from this origin (repeatable).")
def serve_command(
    host: str,
    port: int,
    atlas: Atlas,
    qdrant_url: str | None,
    weights: Path | None,
    device: str,
    api_key_env: str | None,
    cors_origins: tuple[str, ...],
) -> None:
    """Serve homolog queries over HTTP (OpenAPI at /openapi.json, interactive docs at /docs).

    The embedded store belongs to one process: index first, then serve. For many users or
    several servers, load the atlas into a Qdrant server (`orthovec load`) and pass --qdrant-url.
    """
    import uvicorn

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UserError(f"--api-key-env {api_key_env}: that environment variable is empty or unset.")
    store = open_store(atlas, qdrant_url)
    store.models()  # fail now (locked or missing store), not on the first request
    for model in store.models():
        store.species_counts(model)
    embedder = sequence_embedder(atlas, weights, device) if weights else None
    app = create_app(store, atlas, sequence_embedder=embedder, api_key=api_key, cors_origins=list(cors_origins))
    click.echo(f"orthovec API on http://{host}:{port} ({describe(store)}); docs at /docs", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        store.close()
