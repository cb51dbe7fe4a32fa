"""`GET /mappings/{species_a}/{species_b}`: pages of a mapping table written by `orthovec map`."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime, and
# they use the server's limits, which exist only inside `router`.
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends, Path, Query

from orthovec.lookup.serve.state import ServeState, State, require_key
from orthovec.schemas import api
from orthovec.schemas.errors import Ambiguous, NotFound
from orthovec.schemas.tables import MAPPING, RELATIONS

ERROR = {"model": api.ErrorResponse}
SpeciesPath = Annotated[api.Name, Path()]


def choose_table(state: ServeState, model: str | None, species_a: str, species_b: str) -> tuple[str, object]:
    """The folder (embedding model or mmseqs2) and path of the table A → B: the requested folder,
    or the only one holding the pair."""
    base = state.atlas.root / "mappings"
    folders = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    holding = [f for f in folders if state.atlas.mapping(f, species_a, species_b).is_file()]
    if model is not None:
        holding = [model] if model in holding else []
    if len(holding) > 1:
        raise Ambiguous(
            f"Several mapping tables {species_a} → {species_b}; choose one.", param="model", choices=holding
        )
    if not holding:
        reverse = [f for f in ([model] if model else folders) if state.atlas.mapping(f, species_b, species_a).is_file()]
        hint = f" The reverse table exists: GET /mappings/{species_b}/{species_a}." if reverse else ""
        which = f"{model} " if model else ""
        raise NotFound(
            f"No {which}mapping table {species_a} → {species_b}. Make it with "
            f"`orthovec map {species_a} {species_b}`.{hint}"
        )
    return holding[0], state.atlas.mapping(holding[0], species_a, species_b)


def router(limits: api.ApiLimits) -> APIRouter:
    routes = APIRouter(dependencies=[Depends(require_key)])

    @routes.get("/mappings/{species_a}/{species_b}", response_model=api.MappingPage, responses={400: ERROR, 404: ERROR})
    def mapping_page(
        state: State,
        species_a: SpeciesPath,
        species_b: SpeciesPath,
        model: Annotated[
            api.Name | None,
            Query(description="the table's folder: an embedding model, or mmseqs2 (default: the only one)"),
        ] = None,
        relation: Annotated[str | None, Query(pattern="^(" + "|".join(RELATIONS) + ")$")] = None,
        min_score: Annotated[float | None, Query(**api.number_bounds("table_score"))] = None,
        # Bounded so that offset + limit stays a valid row index (a 2**63 offset overflowed polars: a 500).
        offset: Annotated[int, Query(ge=0, le=limits.max_offset)] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.max_page)] = 100,
    ) -> api.MappingPage:
        """A page of the mapping table species_a → species_b, filtered by relation and minimum score."""
        folder, path = choose_table(state, model, species_a, species_b)
        rows = state.reader.table(path, MAPPING)  # type: ignore[arg-type]
        if relation:
            rows = rows.filter(pl.col("relation") == relation)
        if min_score is not None:
            # Compare as float64: a float32 score of 0.95 is 0.94999999, and JSON shows it so.
            rows = rows.filter(pl.col("score").cast(pl.Float64) >= min_score)
        columns = [c for c in api.MappingRow.model_fields if c in rows.columns]
        # JSON has no NaN: a missing score is null.
        page = rows.slice(offset, limit).select(columns).with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))
        return api.MappingPage(
            species_a=species_a,
            species_b=species_b,
            model=folder,
            total=rows.height,
            offset=offset,
            limit=limit,
            next_offset=offset + limit if offset + limit < rows.height else None,
            rows=[api.MappingRow(**row) for row in page.iter_rows(named=True)],
        )

    return routes
