"""Files users hand us (FASTA, TSV, CSV) and files we write: opened, written and failed the same way.

Every final path is written through a temporary sibling `.NAME.PID.tmp` and `os.replace`, so a
reader sees the old file or the new one, never half of one. A run killed mid-write leaves its
temporary behind; the next write of the same name removes temporaries whose process is gone.
A full or read-only disk is the user's to fix, so it becomes one `Unavailable` message, not a
traceback.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from orthovec.schemas.errors import Invalid, NotFound, Unavailable, UserError

#: errno values that mean "the disk cannot take this write", as opposed to a bug.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def file_kind(path: Path) -> str:
    """What a path that exists but is not a regular file is, in words ("a directory", "a named pipe (FIFO)")."""
    mode = Path(path).stat().st_mode
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_text(path: Path) -> IO[str]:
    """Text handle for plain or gzip files, detected by magic bytes rather than the extension."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path}: file not found.")
    if not path.is_file():
        # A FIFO (`<(zcat x.gz)`) cannot be read twice, and gzip detection reads ahead first.
        raise Invalid(f"{path}: is {file_kind(path)}; orthovec reads its input twice, so save it to a file first.")
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def disk_error(err: OSError, path: Path) -> UserError | None:
    """The user-facing error for a write that failed because of the disk, or None for anything else."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return Unavailable(
            f"{path}: the disk is full ({err.strerror}). Free space on {_mount_of(path)} (or use an atlas on "
            "another disk) and run the same command again; finished work is kept."
        )
    if err.errno == errno.EROFS:
        return Unavailable(
            f"{path}: the file system is read-only. Commands that only read (query, species, serve) work on a "
            "read-only atlas; to write, copy the atlas somewhere writable or remount it read-write."
        )
    return None


def _mount_of(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() or not os.path.ismount(path):
        if path.parent == path:
            return path
        path = path.parent
    return path


def check_output_apart(outputs: Iterable[Path], inputs: Iterable[Path], *, param: str = "out") -> None:
    """Refuse, before any work, an output that would destroy an input.

    An output may not be one of the inputs, lie inside an input directory, or (an output directory,
    which a run replaces as a whole) hold an input. Paths are compared after resolving links, so
    `out/../in.parquet` and a symlink to an input are caught too. Every command that writes calls this.
    """
    sources = [(Path(p), Path(os.path.realpath(p))) for p in inputs]
    for output in outputs:
        target = Path(os.path.realpath(output))
        for given, source in sources:
            if target == source:
                raise Invalid(
                    f"is also an input ({given}); writing it would destroy that input.", param=param, value=output
                )
            if source.is_relative_to(target):
                raise Invalid(
                    f"holds the input {given}; the output is replaced as a whole, so choose a directory apart from "
                    "the inputs.",
                    param=param,
                    value=output,
                )
            if target.is_relative_to(source):
                raise Invalid(
                    f"lies inside the input {given}; choose a place apart from the inputs.", param=param, value=output
                )


def check_free_space(directory: Path, needed_bytes: int, what: str) -> None:
    """Refuse before a large write that cannot fit: a full disk under mmap ends in SIGBUS, not an error."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise Unavailable(
            f"{directory}: {what} needs about {needed_bytes / 1e6:,.1f} MB but only {free / 1e6:,.1f} MB are free "
            f"on {_mount_of(probe)}. Free space (or use an atlas on another disk) and run the same command again."
        )


def temp_sibling(path: Path) -> Path:
    """The temporary name a write of `path` by this process uses."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(path: Path) -> None:
    """Delete `.NAME.PID.tmp` siblings of `path` left by processes that no longer exist."""
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        pid = candidate.name.removeprefix(f".{path.name}.").removesuffix(".tmp")
        if pid.isdigit() and not process_alive(int(pid)):
            candidate.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a temporary named after a dead one is debris)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)`, then rename tmp over `path`; on failure no temporary is left behind."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise (disk_error(err, path) or err) from err
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # on a read-only disk there is nothing to remove
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> Path:
    """A small text file (JSON report, marker) written so readers never see half of it."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))
