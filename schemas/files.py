"""Opening the text files users hand us (FASTA, TSV, CSV), plain or gzip."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

from orthovec.schemas.errors import UserError


def open_text(path: Path) -> IO[str]:
    """Text handle for plain or gzip files, detected by magic bytes rather than the extension."""
    if not Path(path).is_file():
        raise UserError(f"{path}: file not found.")
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")
