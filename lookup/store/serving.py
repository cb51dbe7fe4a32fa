"""Where a running `orthovec serve` answers, recorded in the atlas while it runs.

A server owns the embedded store's shard for as long as it runs. A reader beside it can ask the
server over HTTP (`serving_url`) instead of reading the store itself. The server holds a lock on
its record for its whole life, and `flock` locks vanish with their process: a record nobody holds
is stale (the server was killed) and is ignored, whatever process now has its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO

from orthovec.core.files import atomic_write_text
from orthovec.core.logs import get_logger
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError

logger = get_logger("lookup.store")


@dataclass(frozen=True)
class ServingRecord:
    """`ATLAS/serving.json`: the server's base URL, its process and machine, and when it started."""

    url: str
    pid: int
    host: str
    started: str


def service_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server listening on `host` (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"http://{host}:{port}"


@contextlib.contextmanager
def serving(atlas: Atlas, host: str, port: int) -> Iterator[ServingRecord | None]:
    """Record this process as the atlas's server while the block runs; cleared on exit.

    On an atlas this process cannot write (read-only, full) nothing is recorded and serving goes
    on: readers then read the store's gene tables in place, which copies nothing either.
    """
    path = atlas.serving_record()
    record = ServingRecord(
        service_url(host, port), os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds")
    )
    try:
        atomic_write_text(path, json.dumps(asdict(record), indent=2) + "\n")
        held: IO[bytes] = open(path, "rb")  # noqa: SIM115 - held open (and locked) while serving
    except (OSError, UserError) as error:
        logger.info("Not recording the server in %s (%s); readers will not find it.", path, error)
        yield None
        return
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new inode: nobody else can hold it
        yield record
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(held.fileno()).st_ino:  # not replaced by a later server
                path.unlink()
        held.close()


def serving_record(atlas: Atlas) -> ServingRecord | None:
    """The atlas's running server on this machine, or None (no record, a stale one, or another machine's)."""
    path = atlas.serving_record()
    try:
        with open(path, "rb") as handle:
            record = ServingRecord(**json.loads(handle.read()))
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                alive = True  # the server holds it
            else:
                alive = False
    except (OSError, ValueError, TypeError):  # absent, unreadable or not a record
        return None
    # Another machine's server (an atlas on a shared file system) cannot be told alive from here.
    return record if alive and record.host == socket.gethostname() else None


def serving_url(atlas: Atlas) -> str | None:
    """The base URL of the server answering for this atlas on this machine, if one runs."""
    record = serving_record(atlas)
    return record.url if record else None
