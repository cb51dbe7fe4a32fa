"""`orthovec serve`: the HTTP API on one store (the atlas's embedded store or a Qdrant server)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import click
import numpy as np
from orthovec.lookup.api import EmbedderUnavailable, SequenceEmbedder, create_app
from orthovec.lookup.sequence import embedder_for_atlas
from orthovec.lookup.store import GeneStore, ServerStore, describe, open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError

from orthovec.options import atlas_option


def lazy_sequence_embedder(atlas: Atlas, weights: Path, device: str) -> SequenceEmbedder:
    """One embedder per model, built on first use (loading ESM-2 takes seconds to minutes).

    A residue problem in a request stays a UserError (422); weights that cannot serve this atlas
    (wrong checkpoint, unreadable file) are the server's problem and answer 503 on every call.
    """
    built: dict[str, object] = {}
    build_lock = threading.Lock()

    def embed(sequences: list[str], model: str) -> np.ndarray:
        with build_lock:  # two first requests must not load the model twice
            if model not in built:
                try:
                    built[model] = embedder_for_atlas(atlas, model, weights, device)
                except UserError as error:
                    raise EmbedderUnavailable(f"Cannot embed sequences with {weights}: {error}") from error
        return built[model](sequences)  # type: ignore[operator]

    return embed


def open_for_serving(atlas: Atlas, qdrant_url: str | None, qdrant_api_key: str | None) -> GeneStore:
    """Open the store and touch every model now, so a locked or empty store fails before listening."""
    store = open_store(atlas, qdrant_url, api_key=qdrant_api_key)
    try:
        models = store.models()
        for model in models:
            store.species_counts(model)  # opens the Edge shard: raises "open in another orthovec process"
    except BaseException:
        store.close()
        raise
    if not models and not isinstance(store, ServerStore):
        # Nobody else may write the embedded store while we hold it, so it would stay empty.
        store.close()
        raise UserError(
            f"The atlas {atlas.root} holds no gene vectors. Index proteomes first (`orthovec index "
            f"FASTA --species NAME --atlas {atlas.root}`), then serve; or pass --qdrant-url."
        )
    return store


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"Cannot listen on {host}:{port} ({error.strerror}); choose another --port.") from error


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to listen on every interface.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@atlas_option
@click.option(
    "--qdrant-url",
    envvar="ORTHOVEC_QDRANT_URL",
    help="Serve from this Qdrant server instead of the atlas's embedded store [env ORTHOVEC_QDRANT_URL].",
)
@click.option(
    "--qdrant-api-key",
    envvar="ORTHOVEC_QDRANT_API_KEY",
    help="Qdrant server API key [env ORTHOVEC_QDRANT_API_KEY].",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="ESM-2 checkpoint the atlas was indexed with; enables POST /homologs/sequence.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--api-key-env",
    metavar="NAME",
    help="Require header X-API-Key equal to this environment variable's value "
    "(on all but /health, /openapi.json, /docs).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Allow browser calls from this origin (repeatable; default none).",
)
def serve_command(
    host: str,
    port: int,
    atlas: Atlas,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    weights: Path | None,
    device: str,
    api_key_env: str | None,
    cors_origins: tuple[str, ...],
) -> None:
    """Serve homolog queries over HTTP (OpenAPI at /openapi.json, interactive docs at /docs).

    The embedded store belongs to one process: index first, then serve (stop the server before
    indexing again). For many users or several API servers, load the atlas into a Qdrant server
    (`orthovec load --qdrant-url URL`) and serve with --qdrant-url.
    """
    import uvicorn

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UserError(f"--api-key-env {api_key_env}: that environment variable is empty or unset.")
    _check_port_free(host, port)
    store = open_for_serving(atlas, qdrant_url, qdrant_api_key)
    try:
        embedder = lazy_sequence_embedder(atlas, weights, device) if weights else None
        app = create_app(store, atlas, sequence_embedder=embedder, api_key=api_key, cors_origins=list(cors_origins))
        sequences = "on" if embedder else "off (no --weights)"
        click.echo(
            f"orthovec API on http://{host}:{port} ({describe(store)}); docs at /docs; sequence queries {sequences}",
            err=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        store.close()
