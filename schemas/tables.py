"""Arrow schemas of every table orthovec writes, and the one way to write and read them.

A table written by one stage is read by the next through the same `TableSpec`, so a column is
named and typed in exactly one place. Files carry their spec name and version plus provenance
(model, layer, pooling, weights hash, orthovec version...) in the Parquet key-value metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orthovec.core.files import atomic_write
from orthovec.schemas.errors import Invalid, NotFound

SCHEMA_KEY = b"orthovec.schema"
PROVENANCE_KEY = b"orthovec.provenance"

#: Marker type for "fixed-size list of float32 of any width" (vector width depends on the model).
VECTOR = pa.list_(pa.float32())


def vector_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


@dataclass(frozen=True)
class TableSpec:
    """Name, version and columns of one kind of table; extra columns are allowed and kept."""

    name: str
    version: int
    required: pa.Schema
    optional: pa.Schema = field(default_factory=lambda: pa.schema([]))

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"

    def schema(self, dim: int | None = None, with_optional: bool = True) -> pa.Schema:
        """Concrete schema, with VECTOR columns given their width."""
        fields = list(self.required) + (list(self.optional) if with_optional else [])
        return pa.schema([_concrete(f, dim) for f in fields])

    def validate(self, table: pa.Table, source: str, columns: Sequence[str] | None = None) -> pa.Table:
        """Check columns, types and nulls; cast harmless differences (string vs large_string).

        With `columns` (a selection read from a file), only the selected spec columns are checked,
        each as strictly as in a full read.
        """
        for spec_field, required in [(f, True) for f in self.required] + [(f, False) for f in self.optional]:
            if columns is not None and spec_field.name not in columns:
                continue
            if spec_field.name not in table.column_names:
                if required:
                    raise Invalid(
                        f"{source}: missing column '{spec_field.name}' required by the {self.tag} "
                        f"table schema (found: {', '.join(table.column_names) or 'no columns'})."
                    )
                continue
            actual = table.schema.field(spec_field.name).type
            table = _conform(table, spec_field, actual, source, self.tag)
            nulls = table.column(spec_field.name).null_count
            if nulls and not spec_field.nullable:
                raise Invalid(
                    f"{source}: column '{spec_field.name}' has {nulls:,} empty (null) values, which the "
                    f"{self.tag} schema does not allow; the file is damaged or was not written for orthovec."
                )
        return table


def _concrete(f: pa.Field, dim: int | None) -> pa.Field:
    if f.type == VECTOR:
        if dim is None:
            raise ValueError(f"column {f.name} needs a vector width")
        return pa.field(f.name, vector_type(dim), nullable=f.nullable)
    return f


def _conform(table: pa.Table, spec_field: pa.Field, actual: pa.DataType, source: str, tag: str) -> pa.Table:
    name = spec_field.name
    if spec_field.type == VECTOR:
        if pa.types.is_fixed_size_list(actual) and actual.value_type == pa.float32():
            return table
        raise Invalid(f"{source}: column '{name}' must be a fixed-size list of float32 ({tag}), found {actual}.")
    if actual == spec_field.type:
        return table
    if actual == pa.null() or _same_kind(actual, spec_field.type):
        idx = table.column_names.index(name)
        return table.set_column(idx, spec_field.with_nullable(True), table.column(name).cast(spec_field.type))
    raise Invalid(f"{source}: column '{name}' should be {spec_field.type} ({tag}), found {actual}.")


def _same_kind(actual: pa.DataType, expected: pa.DataType) -> bool:
    kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_dictionary)
    if any(k(expected) for k in kinds[:2]):
        return any(k(actual) for k in kinds)
    return any(predicate(expected) and predicate(actual) for predicate in (pa.types.is_integer, pa.types.is_floating))


def write_table(table: pa.Table, path: Path, spec: TableSpec, provenance: Mapping[str, Any]) -> Path:
    """Validate, then write atomically (temp file + rename) so a killed run never leaves half a file."""
    table = spec.validate(table, str(path))
    metadata = dict(table.schema.metadata or {})
    metadata[SCHEMA_KEY] = spec.tag.encode()
    metadata[PROVENANCE_KEY] = json.dumps(dict(provenance), sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(metadata)
    return atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_table(
    path: Path, spec: TableSpec, columns: list[str] | None = None, where: tuple[str, str] | None = None
) -> pa.Table:
    """Read and validate a table written by `write_table` (or a compatible one from elsewhere).

    `where` (column, value) reads only the rows holding that value, skipping row groups whose
    statistics rule it out: one gene's rows of a million-row mapping table.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: file not found (expected a {spec.tag} Parquet table).")
    try:
        table = pq.read_table(path, columns=columns, filters=[(where[0], "==", where[1])] if where else None)
    except (pa.ArrowInvalid, OSError) as err:
        raise Invalid(f"{path}: not a readable Parquet file ({err}).") from err
    name, version = _schema_tag(path, table.schema.metadata or {})
    if name is not None and name != spec.name:
        raise Invalid(f"{path}: holds a '{name}/{version}' table, expected '{spec.tag}'.")
    if version is not None and version > spec.version:
        raise Invalid(
            f"{path}: written by a newer orthovec ({name}/{version}); this version reads up to {spec.tag}. "
            "Upgrade orthovec."
        )
    return spec.validate(table, str(path), columns)


def _schema_tag(path: Path, metadata: Mapping[bytes, bytes]) -> tuple[str | None, int | None]:
    """(name, version) of a file's `orthovec.schema` tag; (None, None) for a file from elsewhere."""
    raw = metadata.get(SCHEMA_KEY)
    if raw is None:
        return None, None
    name, _, version = raw.decode("utf-8", errors="replace").partition("/")
    if not name or not version.isdigit():
        raise Invalid(
            f"{path}: its orthovec schema tag {raw[:40]!r} is malformed (expected NAME/VERSION); the file is "
            "damaged. Write it again with the orthovec command that made it."
        )
    return name, int(version)


def table_kind(path: Path) -> str | None:
    """The spec name a file is stamped with (`mapping`, `homology_groups`...), None for a file from elsewhere."""
    path = Path(path)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except FileNotFoundError as err:
        raise NotFound(f"{path}: file not found.") from err
    except (pa.ArrowInvalid, OSError) as err:
        raise Invalid(f"{path}: not a readable Parquet file ({err}).") from err
    return _schema_tag(path, metadata)[0]


def read_provenance(path: Path) -> dict[str, Any]:
    """The provenance stamped by `write_table` ({} for a file from elsewhere)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        raw = metadata.get(PROVENANCE_KEY)
        provenance = json.loads(raw) if raw else {}
    except FileNotFoundError as err:
        raise NotFound(f"{path}: file not found.") from err
    except (pa.ArrowInvalid, OSError, ValueError) as err:
        raise Invalid(f"{path}: unreadable Parquet file or provenance ({err}).") from err
    if not isinstance(provenance, dict):
        raise Invalid(f"{path}: its provenance is not a JSON object; the file is damaged.")
    return provenance


# --- indexer ---------------------------------------------------------------------------------

PROTEINS = TableSpec(
    "proteins",
    1,
    pa.schema(
        [
            pa.field("species", pa.string(), nullable=False),
            pa.field("protein_id", pa.string(), nullable=False),
            pa.field("gene_id", pa.string(), nullable=False),
            pa.field("gene_symbol", pa.string()),
            pa.field("taxid", pa.int64()),
            pa.field("seq_hash", pa.string(), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
            pa.field("is_canonical", pa.bool_()),
            pa.field("sequence", pa.string(), nullable=False),
        ]
    ),
    pa.schema([pa.field("description", pa.string()), pa.field("transcript_id", pa.string())]),
)

#: One row per distinct sequence of a species, keyed by content hash.
PROTEIN_EMBEDDINGS = TableSpec(
    "protein_embeddings",
    1,
    pa.schema(
        [
            pa.field("seq_hash", pa.string(), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
            pa.field("embedding", VECTOR, nullable=False),
        ]
    ),
)

GENES = TableSpec(
    "genes",
    1,
    pa.schema(
        [
            pa.field("species", pa.string(), nullable=False),
            pa.field("gene_id", pa.string(), nullable=False),
            pa.field("gene_symbol", pa.string()),
            pa.field("taxid", pa.int64()),
            pa.field("n_proteins", pa.int32(), nullable=False),
            pa.field("protein_ids", pa.list_(pa.string()), nullable=False),
            pa.field("embedding", VECTOR, nullable=False),
        ]
    ),
)

# --- lookup ----------------------------------------------------------------------------------

RELATIONS = ("one2one", "one2many", "many2one", "many2many")

MAPPING = TableSpec(
    "mapping",
    1,
    pa.schema(
        [
            pa.field("species_a", pa.string(), nullable=False),
            pa.field("gene_id_a", pa.string(), nullable=False),
            pa.field("gene_symbol_a", pa.string()),
            pa.field("species_b", pa.string(), nullable=False),
            pa.field("gene_id_b", pa.string(), nullable=False),
            pa.field("gene_symbol_b", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("rank_ab", pa.int32()),
            pa.field("rank_ba", pa.int32()),
            pa.field("is_rbh", pa.bool_()),
            pa.field("relation", pa.string()),
            pa.field("group_id", pa.int64()),
            pa.field("source", pa.string(), nullable=False),
        ]
    ),
    pa.schema(
        [
            # orthovec map
            pa.field("is_one2one_greedy", pa.bool_()),
            pa.field("is_one2one_optimal", pa.bool_()),
            pa.field("margin_a", pa.float32()),
            # import-homology (Ensembl BioMart)
            pa.field("homology_type", pa.string()),
            pa.field("perc_id_ab", pa.float32()),
            pa.field("perc_id_ba", pa.float32()),
            pa.field("orthology_confidence", pa.int8()),
            pa.field("goc_score", pa.float32()),
            pa.field("embedding_score", pa.float32()),
            # orthovec map evidence (lookup/homology/mapping.py defines each): null where a source has no say
            pa.field("embedding_evalue", pa.float64()),
            pa.field("alignment_bits", pa.float32()),
            pa.field("alignment_bsr", pa.float32()),
            pa.field("alignment_identity", pa.float32()),
            pa.field("alignment_coverage_a", pa.float32()),
            pa.field("alignment_coverage_b", pa.float32()),
            pa.field("alignment_evalue", pa.float64()),
            pa.field("fused_score", pa.float32()),
            pa.field("evidence", pa.string()),
        ]
    ),
)


#: Written by `orthovec align`: one row per gene pair with an MMseqs2 hit in either direction, from
#: the pair's best-scoring isoform pair. identity and coverages are fractions in [0, 1]; `bsr` is the
#: blast score ratio bits / max(self_bits_a, self_bits_b) in (0, 1]; `hit_ab` / `hit_ba` say which
#: search direction found the pair. E-values are float64 because they underflow float32 (MMseqs2
#: reports 0 below about 1e-300).
ALIGNMENT = TableSpec(
    "alignment",
    1,
    pa.schema(
        [
            pa.field("species_a", pa.string(), nullable=False),
            pa.field("gene_id_a", pa.string(), nullable=False),
            pa.field("gene_symbol_a", pa.string()),
            pa.field("species_b", pa.string(), nullable=False),
            pa.field("gene_id_b", pa.string(), nullable=False),
            pa.field("gene_symbol_b", pa.string()),
            pa.field("protein_id_a", pa.string(), nullable=False),
            pa.field("protein_id_b", pa.string(), nullable=False),
            pa.field("bits", pa.float32(), nullable=False),
            pa.field("evalue", pa.float64(), nullable=False),
            pa.field("identity", pa.float32(), nullable=False),
            pa.field("coverage_a", pa.float32(), nullable=False),
            pa.field("coverage_b", pa.float32(), nullable=False),
            pa.field("self_bits_a", pa.float32(), nullable=False),
            pa.field("self_bits_b", pa.float32(), nullable=False),
            pa.field("bsr", pa.float32(), nullable=False),
            pa.field("hit_ab", pa.bool_(), nullable=False),
            pa.field("hit_ba", pa.bool_(), nullable=False),
        ]
    ),
)


#: Not a file: the answer of `lookup.homology.search.search_sequences`, one row per (query sequence,
#: target gene) from the gene's best-aligned protein, `rank` 1 = most bits. `query` is the caller's
#: label, `query_index` its position in the request; the scores mean what they mean in ALIGNMENT
#: (coverages of the query and of the target protein).
SEQUENCE_HITS = TableSpec(
    "sequence_hits",
    1,
    pa.schema(
        [
            pa.field("query", pa.string(), nullable=False),
            pa.field("query_index", pa.int32(), nullable=False),
            pa.field("species", pa.string(), nullable=False),
            pa.field("gene_id", pa.string(), nullable=False),
            pa.field("gene_symbol", pa.string()),
            pa.field("protein_id", pa.string(), nullable=False),
            pa.field("rank", pa.int32(), nullable=False),
            pa.field("bits", pa.float32(), nullable=False),
            pa.field("evalue", pa.float64(), nullable=False),
            pa.field("identity", pa.float32(), nullable=False),
            pa.field("coverage_query", pa.float32(), nullable=False),
            pa.field("coverage_target", pa.float32(), nullable=False),
            pa.field("bsr", pa.float32(), nullable=False),
        ]
    ),
)


def vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """A (rows, dim) matrix as the fixed-size-list float32 column every VECTOR field uses."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])


def genes_table(
    species: str | Sequence[str],
    gene_ids: Sequence[str],
    vectors: np.ndarray,
    gene_symbols: Sequence[str | None] | None = None,
    taxids: Sequence[int | None] | pa.Array | None = None,
    n_proteins: Sequence[int] | None = None,
    protein_ids: Sequence[Sequence[str]] | None = None,
) -> pa.Table:
    """A GENES table; unspecified columns get the single-protein defaults."""
    n = len(gene_ids)
    species_column = [species] * n if isinstance(species, str) else list(species)
    table = pa.table(
        {
            "species": pa.array(species_column, pa.string()),
            "gene_id": pa.array(list(gene_ids), pa.string()),
            "gene_symbol": pa.array(list(gene_symbols) if gene_symbols is not None else list(gene_ids), pa.string()),
            "taxid": taxids if isinstance(taxids, pa.Array) else pa.array(taxids or [None] * n, pa.int64()),
            "n_proteins": pa.array(n_proteins if n_proteins is not None else [1] * n, pa.int32()),
            "protein_ids": pa.array(
                protein_ids if protein_ids is not None else [[g] for g in gene_ids], pa.list_(pa.string())
            ),
            "embedding": vectors_column(vectors),
        },
        schema=GENES.schema(vectors.shape[1]),
    )
    return table


#: Written by `orthovec map` with three or more species: one row per homology group, plus two
#: list columns per species (`<species>` gene IDs and `<species>_symbols`).
HOMOLOGY_GROUPS = TableSpec(
    "homology_groups",
    1,
    pa.schema([pa.field("group_id", pa.int64(), nullable=False), pa.field("n_species", pa.int32())]),
)


# --- integrate -------------------------------------------------------------------------------

#: Written by `orthovec integrate` (`correspondence.parquet`): cell type × cell type of each species pair,
#: scored by cross-species neighbours in the integrated space (see `orthovec.integrate.correspondence`).
CELLTYPE_CORRESPONDENCE = TableSpec(
    "celltype_correspondence",
    1,
    pa.schema(
        [
            pa.field("species_a", pa.string(), nullable=False),
            pa.field("cell_type_a", pa.string(), nullable=False),
            pa.field("n_cells_a", pa.int32(), nullable=False),
            pa.field("species_b", pa.string(), nullable=False),
            pa.field("cell_type_b", pa.string(), nullable=False),
            pa.field("n_cells_b", pa.int32(), nullable=False),
            pa.field("fraction_a_to_b", pa.float32(), nullable=False),
            pa.field("fraction_b_to_a", pa.float32(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
            pa.field("is_mutual_best", pa.bool_(), nullable=False),
        ]
    ),
)

#: Written by `orthovec integrate` (`markers.parquet`): per cell type shared by all species and per
#: species, the marker statistics of each shared feature, and the feature's conserved score and rank.
CONSERVED_MARKERS = TableSpec(
    "conserved_markers",
    1,
    pa.schema(
        [
            pa.field("cell_type", pa.string(), nullable=False),
            pa.field("feature", pa.string(), nullable=False),
            pa.field("species", pa.string(), nullable=False),
            pa.field("gene", pa.string(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
            pa.field("log2_fold_change", pa.float32()),
            pa.field("pval_adj", pa.float64()),
            pa.field("rank", pa.int32(), nullable=False),
            pa.field("conserved_score", pa.float32(), nullable=False),
            pa.field("conserved_rank", pa.int32(), nullable=False),
        ]
    ),
)

#: Written by `orthovec integrate` (`conservation.parquet`): per shared feature and non-reference
#: species, sequence evidence beside expression conservation across the cell types both share.
GENE_CONSERVATION = TableSpec(
    "gene_conservation",
    1,
    pa.schema(
        [
            pa.field("feature", pa.string(), nullable=False),
            pa.field("reference", pa.string(), nullable=False),
            pa.field("gene_reference", pa.string(), nullable=False),
            pa.field("species", pa.string(), nullable=False),
            pa.field("gene", pa.string(), nullable=False),
            pa.field("mapping_score", pa.float32()),
            pa.field("identity", pa.float32()),
            pa.field("expression_correlation", pa.float32()),
            pa.field("n_cell_types", pa.int32(), nullable=False),
            pa.field("mean_expression_reference", pa.float32(), nullable=False),
            pa.field("mean_expression", pa.float32(), nullable=False),
        ]
    ),
)
