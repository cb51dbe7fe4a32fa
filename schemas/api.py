"""Request and response models of the HTTP API (published in its OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_K = 100
MAX_SEQUENCE_LENGTH = 5000
MAX_SEQUENCES = 32
MAX_PAGE = 1000


class HitModel(BaseModel):
    species: str
    gene_id: str
    gene_symbol: str | None
    score: float = Field(description="cosine similarity of the gene vectors")
    rank: int
    is_rbh: bool = Field(description="reciprocal best hit")
    margin: float | None = Field(description="score minus the next hit's score")


class GeneModel(BaseModel):
    species: str
    gene_id: str
    gene_symbol: str | None


class HomologsResponse(BaseModel):
    query: GeneModel
    model: str
    hits: list[HitModel]


class SequenceIn(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    sequence: str = Field(min_length=1, max_length=MAX_SEQUENCE_LENGTH)


class SequenceQuery(BaseModel):
    sequences: list[SequenceIn] = Field(min_length=1, max_length=MAX_SEQUENCES)
    to: list[str] = Field(min_length=1, max_length=50)
    k: int = Field(default=10, ge=1, le=MAX_K)
    model: str | None = None


class SequenceHits(BaseModel):
    id: str
    hits: list[HitModel]


class SequenceResponse(BaseModel):
    model: str
    results: list[SequenceHits]


class SpeciesModel(BaseModel):
    species: str
    model: str
    genes: int


class HealthResponse(BaseModel):
    status: str
    store: str
    models: list[str]


class MappingRow(BaseModel):
    gene_id_a: str
    gene_symbol_a: str | None
    gene_id_b: str
    gene_symbol_b: str | None
    score: float | None
    rank_ab: int | None
    rank_ba: int | None
    is_rbh: bool | None
    relation: str | None
    group_id: int | None


class MappingPage(BaseModel):
    species_a: str
    species_b: str
    model: str
    total: int
    offset: int
    limit: int
    rows: list[MappingRow]


class ErrorResponse(BaseModel):
    detail: str
