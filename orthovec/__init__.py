"""orthovec: map genes across species with protein language models.

    import orthovec as ov
    ov.index_proteome("human.fasta.gz", "human", weights="esm2_t33_650M_UR50D.pt")
    ov.map_species(["human", "mouse"])
    ov.query("TP53", "human", to=["mouse"])

The API functions live in `orthovec.api` and load on first use, so importing `orthovec` (or one
stage such as `orthovec.lookup`) does not pull in torch or scanpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from orthovec.core.version import __version__
from orthovec.schemas.errors import Ambiguous, Invalid, NotFound, Unavailable, UserError

__all__ = [
    "Ambiguous",
    "Invalid",
    "NotFound",
    "Unavailable",
    "UserError",
    "__version__",
    "align_species",
    "index_proteome",
    "integrate_species",
    "map_species",
    "query",
    "read_mapping",
]
_API = {"align_species", "index_proteome", "integrate_species", "map_species", "query", "read_mapping"}

if TYPE_CHECKING:
    from orthovec.api import align_species, index_proteome, integrate_species, map_species, query, read_mapping


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("orthovec.api"), name)
    raise AttributeError(f"module 'orthovec' has no attribute {name!r}")
