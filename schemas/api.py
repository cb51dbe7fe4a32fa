"""Request and response models of the HTTP API (published in its OpenAPI document).

Limits are part of the contract: `ApiLimits` bounds every request, and the request models are
built from it so the OpenAPI document shows the bounds the server enforces. Mapping rows are
built from the `orthovec.schemas.tables.MAPPING` table spec, so the API and the Parquet files never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from orthovec.schemas.atlas import NAME
from orthovec.schemas.parameters import RULES
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
    #: Residues times target species one sequence request may search with MMseqs2 (422 above):
    #: one MMseqs2 search takes the server's cores while it runs.
    max_search_residues: int = 50_000


def _no_lone_surrogates(text: str) -> str:
    """JSON may spell a lone UTF-16 surrogate (`"\\ud800"`) that no text encoding can hold; refused
    here as bad input (422) instead of failing when the answer is written (a 500)."""
    if any("\ud800" <= char <= "\udfff" for char in text):
        raise ValueError("holds a lone UTF-16 surrogate, which is not text")
    return text


#: Every free-text request field: any characters but lone surrogates.
Text = Annotated[str, AfterValidator(_no_lone_surrogates)]
#: Species and model names (the pattern leaves no room for a surrogate).
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
#: The evidence that orders the homologs of one target species, as `orthovec map --evidence` chooses it.
Evidence = Literal["auto", "embedding", "alignment", "fused"]
EVIDENCE: tuple[Evidence, ...] = ("auto", "embedding", "alignment", "fused")


def number_bounds(rule: str, *, high: float | None = None) -> dict[str, Any]:
    """Keyword arguments of a pydantic `Field` or FastAPI `Query` for the shared rule `rule`
    (`orthovec.schemas.parameters.RULES`), so HTTP refuses what the command line and the manifest
    refuse and OpenAPI shows the bounds; `high` tightens the upper bound (a server's own limit)."""
    number = RULES[rule]
    bounds: dict[str, Any] = {"description": number.what}
    if number.low is not None:
        bounds["gt" if number.low_open else "ge"] = number.low
    top = number.high if high is None else min(high, number.high if number.high is not None else high)
    if top is not None:
        bounds["le"] = top
    if number.kind is float:
        bounds["allow_inf_nan"] = number.allow_inf
    return bounds


class Homolog(BaseModel):
    """One homolog candidate in one target species: the row every front end shows (`orthovec query`,
    `GET /homologs`, `POST /homologs/sequence`, `ov.query`, the page), from `orthovec.lookup.homologs`.

    Each source of evidence fills its own fields and leaves the others null: the mapping table
    (`orthovec map`), the MMseqs2 alignment, the embedding neighbours.
    """

    species: str
    gene_id: str
    gene_symbol: str | None
    rank: int = Field(description="1 = best in this species by the evidence order (see the target's `evidence`)")
    score: float | None = Field(
        description="the evidence order's score: fused (1 + BSR when aligned, below 1 otherwise), BSR, or the "
        "embedding cosine; null for a candidate that evidence has no score for (ranked after those it has)"
    )
    margin: float | None = Field(description="score minus the next candidate's (small = an ambiguous call)")
    evidence: str = Field(description="which sources saw this pair: 'alignment', 'embedding' or 'both'")
    is_one2one: bool = Field(description="`orthovec map` calls this pair one-to-one (greedy, above the E-value floor)")
    relation: str | None = Field(description="the pair's relation in the homology graph of `orthovec map`")
    group_id: int | None = Field(description="the homology group of `orthovec map`")
    is_rbh: bool = Field(description="reciprocal best hit under the evidence order: the hit's best back is the query")
    is_paralog: bool = Field(description="the hit is in the query's own species")
    bits: float | None = Field(description="MMseqs2 bit score of the best isoform pair")
    bsr: float | None = Field(description="blast score ratio: bits / the larger self-score, in (0, 1]")
    identity: float | None = Field(description="MMseqs2 identity (0-1) of query and hit")
    coverage_query: float | None = Field(description="share of the query protein in that alignment")
    coverage_target: float | None = Field(description="share of the hit's protein in that alignment")
    evalue: float | None = Field(description="MMseqs2 E-value of that alignment")
    embedding_score: float | None = Field(description="cosine similarity of the gene vectors")
    embedding_rank: int | None = Field(description="rank among the query's nearest genes in this species")
    embedding_evalue: float | None = Field(
        description="expected chance hits scoring as well (from the mapping table; null where it has no row)"
    )
    fused_score: float | None = Field(description="the fused score of `orthovec map` on fused evidence")


class TargetSpecies(BaseModel):
    """How one target species was searched, and what that found."""

    species: str
    evidence: str = Field(description="the evidence order: 'fused', 'alignment' or 'embedding'")
    model: str | None = Field(description="the embedding model, null when no gene vectors took part")
    mapping: str | None = Field(description="the mapping table the candidates came from (file name), if any")
    max_evalue: float = Field(description="the one-to-one E-value floor")
    note: str | None = Field(
        description="said when no candidate clears the floor, e.g. 'no homolog with E-value ≤ 0.01 in mouse'"
    )


class GeneModel(BaseModel):
    """A gene; as a query, a sequence is a GeneModel with its name as `gene_id` and no species."""

    species: str | None
    gene_id: str
    gene_symbol: str | None


class HomologsResponse(BaseModel):
    """The homologs of one query (a gene, or a sequence with `query.species` null)."""

    query: GeneModel
    model: str | None = Field(description="the embedding model used, null when only alignments answered")
    targets: list[TargetSpecies] = Field(description="one entry per target species, in the order of `hits`")
    hits: list[Homolog] = Field(description="top k per target species, ordered by species then rank")


class SequenceIn(BaseModel):
    """One query sequence (bounds per server: see `sequence_query_model`)."""

    id: Text = Field(min_length=1, max_length=200)
    sequence: str = Field(min_length=1, pattern=SEQUENCE_PATTERN)


class SequenceQuery(BaseModel):
    sequences: list[SequenceIn] = Field(min_length=1)
    to: list[Name] = Field(min_length=1, description="target species")
    k: int = Field(default=10, ge=1, description="hits per target species")
    model: Name | None = Field(default=None, description="default: the model the target species are held under")
    evidence: Evidence = Field(default="auto", description="auto: fused where both sources exist")


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
        k=(int, Field(default=10, **number_bounds("k", high=limits.max_k))),
    )


class SequenceHits(BaseModel):
    id: str
    targets: list[TargetSpecies]
    hits: list[Homolog]


class SequenceResponse(BaseModel):
    model: str | None = Field(description="the embedding model used, null when only MMseqs2 answered")
    results: list[SequenceHits] = Field(description="one entry per query sequence, in request order")


class SpeciesCount(BaseModel):
    species: str
    model: str | None = Field(description="the embedding model; null for a species indexed without embeddings")
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
    model: str = Field(description="the table's folder: an embedding model, or 'mmseqs2' for alignment-only tables")
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
    model: str | None = Field(
        default=None, description="the `model` to pass to GET /mappings: the embedding model, or 'mmseqs2'"
    )
    evidence: str | None = Field(default=None, description="what `orthovec map` made it from")


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
    sequence_queries: bool = Field(description="whether POST /homologs/sequence answers (MMseqs2 or embedding)")
    sequence_embedding: bool = Field(description="whether it also embeds sequences (the server has weights)")
    models: list[ModelInfo]
    species: list[SpeciesCount] = Field(description="as GET /species (model null: a species without vectors)")
    mappings: list[MappingPair] = Field(description="every mapping table of the atlas, embedding models and mmseqs2")
