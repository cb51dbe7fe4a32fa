"""Running the HTTP API on one store (the atlas's embedded store or a Qdrant server): `orthovec serve`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from orthovec.core.logs import get_logger
from orthovec.lookup.homologs import mmseqs_search
from orthovec.lookup.sequence import lazy_embedder, sequence_weights
from orthovec.lookup.serve.app import create_app
from orthovec.lookup.store import GeneStore, ServerStore, describe, open_store, serving
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound, Unavailable

logger = get_logger("lookup.serve")

#: Seconds a client has to send one whole request (line, headers and body) before it gets 408.
DEFAULT_REQUEST_TIMEOUT = 30.0


def open_for_serving(atlas: Atlas, qdrant_url: str | None, qdrant_api_key: str | None) -> GeneStore | None:
    """Open the store as a reader and check every model now, so a busy, mixed or empty store fails
    before listening; None for an atlas indexed without embeddings (its tables answer alone)."""
    from orthovec.lookup.store.load import check_store_space

    indexed = [name for name in atlas.species_names() if atlas.proteins(name).is_file()]
    embedded = atlas.root / "qdrant"
    if not qdrant_url and indexed and not (embedded.is_dir() and any(p.is_dir() for p in embedded.iterdir())):
        return None
    store = open_store(atlas, qdrant_url, api_key=qdrant_api_key, read_only=True)
    try:
        models = store.models()
        for model in models:
            check_store_space(store, model)  # opens the Edge shard; vectors of two spaces are refused
    except BaseException:
        store.close()
        raise
    if not models and not indexed and not isinstance(store, ServerStore):
        # No writer may change the embedded store while we hold it, so it would stay empty.
        store.close()
        raise NotFound(
            f"The atlas {atlas.root} holds no species. Index proteomes into it first (`orthovec index`), "
            "then serve; or serve the vectors of a Qdrant server.",
            param="atlas",
        )
    return store


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise Unavailable(
                f"Cannot listen on {host}:{port} ({error.strerror}); choose another port.", param="port", value=port
            ) from error


class RequestDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for receiving each request.

    uvicorn times out only idle keep-alive connections: a client that opens a connection and sends
    part of a request line, headers or body, then waits, holds that connection (a socket and a
    task) for as long as it likes; 200 such clients were all still connected after 40 s (slowloris).
    Here a request must arrive whole within `request_timeout` seconds of the connection opening or
    of the previous response; otherwise the client gets 408 and the connection is closed. The time
    the app takes to answer is not limited, and neither is a body the server itself is slow to read.
    """

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this keep-alive connection gets a deadline of its own

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _too_slow(self) -> None:
        receiving = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if self.transport.is_closing() or not receiving or self.flow.read_paused:
            return  # received whole (the app is working on it), or paused by us, not by the client
        if self.cycle is None or not self.cycle.response_started:
            message = f"Request not received within {self.request_timeout:g} s; connection closed.\n".encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                + f"content-length: {len(message)}\r\nconnection: close\r\n\r\n".encode()
                + message
            )
        self.transport.close()


def deadline_protocol(request_timeout: float) -> type[RequestDeadlineProtocol]:
    """The protocol class for uvicorn's `http=` setting, with this deadline."""
    return type("RequestDeadlineProtocol", (RequestDeadlineProtocol,), {"request_timeout": request_timeout})


def run_server(
    atlas: Atlas,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
    weights: Path | None = None,
    embed: bool = True,
    device: str = "auto",
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> None:
    """Check the port and the store, then answer HTTP requests until interrupted (closing the store after).

    Sequences are embedded with `weights`, by default the checkpoint the atlas was indexed with
    (`sequence_weights`), unless `embed` is False; they are always searched with MMseqs2.
    """
    import uvicorn

    _check_port_free(host, port)
    store = open_for_serving(atlas, qdrant_url, qdrant_api_key)
    try:
        checkpoint = sequence_weights(atlas, store.models(), weights) if store is not None and embed else None
        embedder = lazy_embedder(atlas, checkpoint, device) if checkpoint else None
        app = create_app(
            store,
            atlas,
            sequence_embedder=embedder,
            sequence_search=mmseqs_search(atlas),
            api_key=api_key,
            cors_origins=list(cors_origins),
        )
        sequences = "embedded and searched" if embedder else "searched with MMseqs2 (no weights to embed with)"
        logger.info(
            f"orthovec API on http://{host}:{port} ({describe(store) if store else 'alignments only'}); "
            "lookup page at /, docs at /docs; "
            f"sequence queries {sequences}"
        )
        with serving(atlas, host, port):  # readers beside this server find it while it runs
            uvicorn.run(app, host=host, port=port, log_level="warning", http=deadline_protocol(request_timeout))
    finally:
        if store is not None:
            store.close()
