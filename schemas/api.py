"""Request and response models of the HTTP API (published in its OpenAPI document).

Limits are part of the contract: `ApiLimits` bounds every request, and the request models are
built from it so the OpenAPI document shows the bounds the server enforces. Mapping rows are
built from the `orthovec.schemas.tables.MAPPING` table spec, so the API and the Parquet files never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model

from orthovec.schemas.atlas import NAME
from orthovec.schemas.tables import MAPPING

#: Species and model names are path-safe names (they become directory and file names).
NAME_PATTERN = NAME.pattern

#: Letters ESM-2 has tokens for (20 standard + X B U Z O: every letter but J), either case, with an
#: optional trailing stop codon. The embedder checks residues again; this makes the rule visible in
#: OpenAPI and turns a bad sequence into a 422 before any model is loaded.
SEQUENCE_PATTERN = r"^[A-IK-Za-ik-z]+\*?$"


@dataclass(frozen=True)
class ApiLimits:
    """Bounds on one request: big enough for real use, small enough that no request hogs the server."""

    max_k: int = 100
    max_sequence_length: int = 5000
    max_sequences: int = 32
    max_targets: int = 100
    max_page: int = 1000
    #: Largest page offset: far past any mapping table, small enough that offset + limit fits in int64.
    max_offset: int = 1 << 40
    #: Request bodies above this are refused (413) before being read; 32 x 5000 residues is ~170 kB.
    max_body_bytes: int = 1 << 20


Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]


class HitModel(BaseModel):
    species: str
    gene_id: str
    gene_symbol: str | None
    score: float = Field(description="cosine similarity of the gene vectors")
    rank: int = Field(description="1 = best hit in this species")
    is_rbh: bool = Field(description="reciprocal best hit: the target's best hit back is the query gene")
    margin: float | None = Field(description="score minus the next hit's score (small = ambiguous call)")
    identity: float | None = Field(
        default=None, description="MMseqs2 identity (0-1) of query and hit, when `orthovec align` ran for the pair"
    )
    coverage_query: float | None = Field(default=None, description="share of the query protein in that alignment")
    coverage_target: float | None = Field(default=None, description="share of the hit's protein in that alignment")


class GeneModel(BaseModel):
    species: str
    gene_id: str
    gene_symbol: str | None


class HomologsResponse(BaseModel):
    query: GeneModel
    model: str
    hits: list[HitModel] = Field(description="top k per target species, ordered by species then rank")


class SequenceIn(BaseModel):
    """One query sequence (bounds per server: see `sequence_query_model`)."""

    id: str = Field(min_length=1, max_length=200)
    sequence: str = Field(min_length=1, pattern=SEQUENCE_PATTERN)


class SequenceQuery(BaseModel):
    sequences: list[SequenceIn] = Field(min_length=1)
    to: list[Name] = Field(min_length=1, description="target species")
    k: int = Field(default=10, ge=1)
    model: Name | None = Field(default=None, description="default: the only model in the store")


def sequence_query_model(limits: ApiLimits) -> type[SequenceQuery]:
    """The request body of `POST /homologs/sequence` with this server's bounds."""
    sequence_in = create_model(
        "SequenceIn",
        __base__=SequenceIn,
        sequence=(str, Field(min_length=1, max_length=limits.max_sequence_length, pattern=SEQUENCE_PATTERN)),
    )
    return create_model(
        "SequenceQuery",
        __base__=SequenceQuery,
        sequences=(list[sequence_in], Field(min_length=1, max_length=limits.max_sequences)),  # type: ignore[valid-type]
        to=(list[Name], Field(min_length=1, max_length=limits.max_targets, description="target species")),
        k=(int, Field(default=10, ge=1, le=limits.max_k)),
    )


class SequenceHits(BaseModel):
    id: str
    hits: list[HitModel]


class SequenceResponse(BaseModel):
    model: str
    results: list[SequenceHits] = Field(description="one entry per query sequence, in request order")


class SpeciesCount(BaseModel):
    species: str
    model: str
    genes: int


class SpeciesResponse(BaseModel):
    species: list[SpeciesCount]


class HealthResponse(BaseModel):
    status: str = Field(description="'ok', or 'unavailable' (with status code 503) when the store does not answer")
    store: str
    models: list[str]
    detail: str | None = None


def _python_type(arrow_type: pa.DataType) -> type:
    if pa.types.is_boolean(arrow_type):
        return bool
    if pa.types.is_integer(arrow_type):
        return int
    if pa.types.is_floating(arrow_type):
        return float
    return str


def _mapping_row_model() -> type[BaseModel]:
    """One MAPPING row; required non-null columns are required, everything else may be null."""
    required = {f.name for f in MAPPING.required if not f.nullable}
    fields: dict[str, Any] = {}
    for column in MAPPING.schema():
        kind = _python_type(column.type)
        fields[column.name] = (kind, ...) if column.name in required else (kind | None, None)
    return create_model("MappingRow", __config__=ConfigDict(extra="ignore"), **fields)


MappingRow = _mapping_row_model()


class MappingPage(BaseModel):
    species_a: str
    species_b: str
    model: str
    total: int = Field(description="rows matching the filters")
    offset: int
    limit: int
    next_offset: int | None = Field(description="offset of the next page, null on the last page")
    rows: list[MappingRow]  # type: ignore[valid-type]


class ErrorResponse(BaseModel):
    detail: str


class GeneSuggestions(BaseModel):
    genes: list[GeneModel] = Field(description="symbol or ID starts with the text first, then contains it")


#: Provenance keys of a model's gene tables that the atlas endpoint reports (what makes vectors comparable).
PROVENANCE_FIELDS = ("weights_sha256", "layer", "pooling", "precision", "long_seqs")


class MappingPair(BaseModel):
    species_a: str
    species_b: str


class ModelInfo(BaseModel):
    model: str
    weights_sha256: str | None = Field(description="checksum of the ESM-2 weights the genes were embedded with")
    layer: int | None
    pooling: str | None
    precision: str | None
    long_seqs: str | None
    species: list[SpeciesCount]
    mappings: list[MappingPair] = Field(description="mapping tables `GET /mappings/{a}/{b}` can page through")


class AtlasResponse(BaseModel):
    orthovec: str = Field(description="version of the server")
    store: str
    sequence_queries: bool = Field(description="whether POST /homologs/sequence can embed (server has --weights)")
    models: list[ModelInfo]
