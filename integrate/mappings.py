"""The gene mappings an integration runs through, and the record of which ones they were.

A result is only interpretable with its mapping, so every table is recorded (path, SHA-256, rows,
species pairs, sources and the provenance `orthovec map`/`import-homology` stamped into it) in
`metrics.json` and `uns['orthovec']`. The upper-cased-symbol baseline is used only when asked for
by name (`symbols`): falling back to it silently would make a mapping-free run look like a result.
A multi-species homology-groups table (`groups__A__B__C.parquet` from `orthovec map A B C`) is
recognised by its schema tag and read apart from the pair tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from orthovec.schemas.errors import Invalid
from orthovec.schemas.tables import HOMOLOGY_GROUPS, MAPPING, read_provenance, read_table, table_kind

SYMBOLS = "symbols"


def symbol_mapping(gene_names: dict[str, pd.Index], reference: str) -> pa.Table:
    """The naive baseline: genes with the same upper-cased symbol are one-to-one orthologs of the reference's."""
    tables = []
    for other, names in gene_names.items():
        if other == reference:
            continue
        by_upper: dict[str, str] = {}
        for name in names:
            by_upper.setdefault(name.upper(), name)
        genes_a = [g for g in dict.fromkeys(gene_names[reference]) if g.upper() in by_upper]
        genes_b = [by_upper[g.upper()] for g in genes_a]
        n = len(genes_a)
        tables.append(
            pa.table(
                {
                    "species_a": [reference] * n,
                    "gene_id_a": genes_a,
                    "gene_symbol_a": genes_a,
                    "species_b": [other] * n,
                    "gene_id_b": genes_b,
                    "gene_symbol_b": genes_b,
                    "score": pa.nulls(n, pa.float32()),
                    "rank_ab": pa.nulls(n, pa.int32()),
                    "rank_ba": pa.nulls(n, pa.int32()),
                    "is_rbh": pa.nulls(n, pa.bool_()),
                    "relation": ["one2one"] * n,
                    "group_id": pa.array(range(n), pa.int64()),
                    "source": ["symbols:upper"] * n,
                }
            )
        )
    return MAPPING.validate(pa.concat_tables(tables), "symbol mapping")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(table: pa.Table) -> dict[str, Any]:
    pairs = table.group_by(["species_a", "species_b"]).aggregate([("gene_id_a", "count")]).to_pylist()
    return {
        "n_rows": table.num_rows,
        "species_pairs": [f"{p['species_a']}->{p['species_b']}" for p in pairs],
        "sources": sorted(pc.unique(table["source"]).to_pylist()),
    }


def _record(path: Path, table: pa.Table) -> dict[str, Any]:
    return {
        "name": path.name,
        "path": str(path.resolve()),
        "sha256": _sha256(path),
        "n_rows": table.num_rows,
        "provenance": read_provenance(path),
    }


def load_mappings(
    names: Sequence[str | Path], gene_names: dict[str, pd.Index], reference: str
) -> tuple[pa.Table | None, list[dict[str, Any]], pa.Table | None]:
    """All pair rows as one table, one provenance record per input (in the order given), and the
    multi-species homology-groups table when one was given (then it is the only input)."""
    if not names:
        raise Invalid(
            "Give a mapping: a table from `orthovec map` or `orthovec import-homology` (one per species pair), "
            f"or '{SYMBOLS}' for the upper-cased-symbol baseline. orthovec does not fall back to symbols on its own.",
            param="mappings",
        )
    groups = [Path(n) for n in names if str(n) != SYMBOLS and table_kind(Path(n)) == HOMOLOGY_GROUPS.name]
    if groups:
        if len(names) > 1:
            raise Invalid(
                f"{groups[0]} is a multi-species homology-groups table: it joins every species by itself, so give "
                "it alone (without pair mapping tables).",
                param="mappings",
            )
        table = read_table(groups[0], HOMOLOGY_GROUPS)
        return None, [_record(groups[0], table) | {"kind": HOMOLOGY_GROUPS.name}], table
    tables, records = [], []
    for name in names:
        if str(name) == SYMBOLS:
            table = symbol_mapping(gene_names, reference)
            records.append({"name": SYMBOLS, "path": None, **_describe(table)})
        else:
            path = Path(name)
            table = read_table(path, MAPPING)
            records.append(
                {
                    "name": path.name,
                    "path": str(path.resolve()),
                    "sha256": _sha256(path),
                    **_describe(table),
                    "provenance": read_provenance(path),
                }
            )
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive"), records, None
