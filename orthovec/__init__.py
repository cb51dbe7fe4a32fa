"""orthovec: map genes across species with protein language models.

One function per verb, as the commands: `ov.index_proteome`, `ov.align_species`,
`ov.map_species`, `ov.query`, `ov.read_mapping`, `ov.integrate_species`. On the atlas that
`orthovec demo` leaves in `./orthovec-demo` (tests run these lines on it):

>>> import orthovec as ov
>>> answer = ov.query("ETF1", "human", to=["xenopus_tropicalis"], k=3, atlas="orthovec-demo")
>>> [(hit.gene_symbol, hit.rank) for hit in answer.hits][0]
('etf1', 1)
>>> mapping = ov.read_mapping("orthovec-demo", "human", "xenopus_tropicalis")
>>> mapping.num_rows >= 150
True

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
