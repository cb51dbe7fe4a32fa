"""Alignment tables read from either side.

The alignment of species A and B is computed once and written as `A__B` (or `B__A`, whichever
was asked first), with `_a` and `_b` column twins; a reader asking for A → B gets the rows with
the twins in its order. Every stage reads alignments through `read_alignment`, so the
orientation rule lives in the contract, not in each reader.
"""

from __future__ import annotations

import pyarrow as pa

from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import ALIGNMENT, read_table

#: Columns that name a search direction rather than a side: they trade places with each other.
_DIRECTED = {"hit_ab": "hit_ba", "hit_ba": "hit_ab"}


def swap_sides(table: pa.Table) -> pa.Table:
    """The same ALIGNMENT gene pairs seen from B: every `_a` column trades places with its `_b`
    twin (and `hit_ab` with `hit_ba`); the column order stays as it was."""
    names = dict(_DIRECTED)
    for name in table.column_names:
        if name.endswith("_a"):
            names[name] = name[:-2] + "_b"
        elif name.endswith("_b"):
            names[name] = name[:-2] + "_a"
    renamed = table.rename_columns([names.get(name, name) for name in table.column_names])
    return renamed.select([f.name for f in table.schema])


def read_alignment(atlas: Atlas, species_a: str, species_b: str) -> pa.Table | None:
    """The alignment table of A and B oriented A → B (whichever order it was computed in), or None."""
    forward, backward = atlas.alignment(species_a, species_b), atlas.alignment(species_b, species_a)
    if forward.is_file():
        return read_table(forward, ALIGNMENT)
    if backward.is_file():
        return swap_sides(read_table(backward, ALIGNMENT))
    return None
