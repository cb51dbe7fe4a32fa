"""Advisory file locks that say who holds them: the atlas's rules for what may run at the same time.

Two locks exist (paths in `Atlas`):
- the store lock `qdrant/.lock`: `index` holds it exclusively for its whole run (it will write the
  store); `query`, `species`, `serve` and `map` hold it shared while they read. So a server and
  any number of readers run together, and a writer is refused at its start, before it writes
  anything, with the holder named.
- the species lock `species/<name>/.index.lock`: one run at a time stages and commits a species
  (this is what makes exactly one `--shard` run assemble).

`flock` locks belong to the open file and vanish with the process, so a killed run never leaves
a stale lock behind. The lock file's text (pid, command) is only a hint for messages.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from orthovec.core.files import disk_error


class FileLock:
    """One flock on `path`, taken without waiting: `acquire` answers whether it got it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle: IO[bytes] | None = None

    def acquire(self, shared: bool = False) -> bool:
        """True when the lock is now held; False when another process holds it in a conflicting mode.

        On a read-only file system a shared lock is granted without a file when none can be made
        (nobody can write there anyway).
        """
        if self._handle is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: nothing is left to flush at close, where a full disk would raise.
            handle = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - held open for the lock's lifetime
        except OSError as err:
            if shared and err.errno in (errno.EROFS, errno.EACCES, errno.ENOENT):
                return True
            raise (disk_error(err, self.path) or err) from err
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        if not shared:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode())
        self._handle = handle
        return True

    def holder(self) -> str:
        """Who last took the lock exclusively, for messages ('' when unknown)."""
        with contextlib.suppress(OSError):
            return self.path.read_text().strip()
        return ""

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None
