"""Publishing an integration's output directory as one set: all new files or all old ones, never a mix.

Everything is written into a staging directory beside `out` (`.<name>.<pid>.staging`), and only
when every file is complete does the staging directory take the place of `out`: with Linux's
`renameat2(RENAME_EXCHANGE)` the two are swapped in one atomic step; elsewhere the old directory is
renamed aside (`.<name>.<pid>.old`) and the new one into place, and a later run puts the old one back
if it finds itself killed between those two renames. A killed or failed run therefore leaves the
previous result untouched and at most a staging directory, which the next run removes.
A full or read-only disk becomes one message instead of a traceback or a truncated h5ad.

Only a previous orthovec result is ever replaced: each published set carries a manifest
(`orthovec-outputs.json`, the names of the files it wrote), and a non-empty `out` holding any
file that manifest does not list (a user's notes, an input .h5ad) is refused before any work.
A result written before manifests existed is recognised by its `metrics.json` and holding only
the names an integration writes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orthovec.core.files import process_alive
from orthovec.schemas.errors import Invalid, Unavailable

#: The manifest of a published output set: the files orthovec wrote, all that a later run may replace.
MANIFEST = "orthovec-outputs.json"
#: What an integration wrote before it kept a manifest.
UNLISTED_OUTPUTS = frozenset(
    {
        "shared.h5ad",
        "metrics.json",
        "umap_species.png",
        "umap_celltype.png",
        "celltype_agreement.png",
        "correspondence.parquet",
        "celltype_correspondence.png",
        "markers.parquet",
        "markers_dotplot.png",
        "conservation.parquet",
    }
)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _leftovers(out: Path, suffix: str) -> list[Path]:
    found = []
    for path in out.parent.glob(f".{out.name}.*.{suffix}"):
        pid = path.name[len(out.name) + 2 : -len(suffix) - 1]
        if pid.isdigit() and not process_alive(int(pid)):
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def _recover(out: Path) -> None:
    """Undo what a run killed mid-swap left behind: restore the old result, drop dead runs' staging."""
    old = _leftovers(out, "old")
    if old and not out.exists():
        os.rename(old.pop(), out)
    for path in [*old, *_leftovers(out, "staging")]:
        shutil.rmtree(path, ignore_errors=True)


def _listed(out: Path) -> set[str] | None:
    """Names the manifest of `out` lists, or None when there is no readable manifest."""
    try:
        listed = json.loads((out / MANIFEST).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return {str(name) for name in listed} if isinstance(listed, list) else None


def check_replaceable(out: Path) -> None:
    """Refuse early (before hours of work) an `out` that is a file or holds files orthovec did not write."""
    out = Path(os.path.abspath(out))
    if out.exists() and not out.is_dir():
        raise Invalid("is a file; give a directory for the integration's outputs.", param="out", value=str(out))
    if not out.is_dir():
        return
    present = {path.name for path in out.iterdir()} - {MANIFEST}
    if not present:
        return
    listed = _listed(out)
    if listed is None and "metrics.json" in present:
        listed = set(UNLISTED_OUTPUTS)
    foreign = sorted(present - (listed or set()))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise Invalid(
            f"holds files orthovec did not write ({shown}: not in its manifest {MANIFEST}); integrate replaces the "
            "whole directory, so give a new or empty one.",
            param="out",
            value=str(out),
        )


def _exchange(staging: Path, out: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where the system cannot."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(out), _RENAME_EXCHANGE)
    return bool(result == 0)


def _publish(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
    elif _exchange(staging, out):
        shutil.rmtree(staging)  # now holds the previous result
    else:
        aside = out.parent / f".{out.name}.{os.getpid()}.old"
        os.rename(out, aside)
        os.rename(staging, out)
        shutil.rmtree(aside)


def disk_error(err: OSError, out: Path) -> Unavailable | None:
    """A UserError for a full or read-only disk (the user can fix those), None for anything else."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return Unavailable(
            f"No space left on the disk of {out.parent} while writing the integration; free space or "
            "choose another output directory. The previous result, if any, is unchanged."
        )
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return Unavailable(
            f"{out.parent} cannot be written ({os.strerror(err.errno)}); choose a writable output directory."
        )
    return None


def require_space(directory: Path, n_bytes: int, what: str) -> None:
    """Refuse before writing when the disk clearly cannot hold it (HDF5 crashes on a full disk rather than failing)."""
    free = shutil.disk_usage(directory).free
    if free < n_bytes:
        raise Unavailable(
            f"{what} needs about {n_bytes / 1e6:,.0f} MB but {directory} has {free / 1e6:,.0f} MB free; free space "
            "or choose another output directory. The previous result, if any, is unchanged."
        )


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a fresh directory to write into; on success it becomes `out` in one swap, on failure it is removed."""
    out = Path(os.path.abspath(out))
    staging = out.parent / f".{out.name}.{os.getpid()}.staging"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _recover(out)
        check_replaceable(out)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise disk_error(err, out) or err from err
    try:
        yield staging
        names = sorted(path.name for path in staging.iterdir())
        (staging / MANIFEST).write_text(json.dumps({"files": names}, indent=1))
        _publish(staging, out)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise disk_error(err, out) or err from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
