"""`GET /homologs` (a gene) and `POST /homologs/sequence` (raw sequences): the homolog service
(`orthovec.lookup.homologs`) over HTTP, the same rows as `orthovec query` and `ov.query`."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime, and
# they use the server's limits, which exist only inside `router`.
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query

from orthovec.lookup.homologs import Row, SequenceSearch, homologs, homologs_of_sequences
from orthovec.lookup.sequence import SequenceEmbedder
from orthovec.lookup.serve.state import ServeState, State, require_key
from orthovec.schemas import api
from orthovec.schemas.errors import Invalid, Unavailable

ERROR = {"model": api.ErrorResponse}
NO_SEQUENCES = (
    "This server answers no sequences: it has neither the atlas's proteomes to search with MMseqs2 nor "
    "weights to embed with. Gene queries (GET /homologs) work without."
)


def _searched(state: ServeState) -> SequenceSearch | None:
    """The server's search, one at a time (MMseqs2 takes every core it is given)."""
    if state.search is None:
        return None
    search = state.search

    def one_at_a_time(records: Sequence[tuple[str, str]], species: str) -> list[list[Row]]:
        with state.search_lock:
            return search(records, species)

    return one_at_a_time


def _embedded(state: ServeState) -> SequenceEmbedder | None:
    """The server's embedder, one batch at a time (a model's activations are large)."""
    if state.embed is None:
        return None
    embed = state.embed

    def one_at_a_time(sequences: list[str], model: str) -> np.ndarray:
        with state.embed_lock:
            return embed(sequences, model)

    return one_at_a_time


def router(limits: api.ApiLimits) -> APIRouter:
    """The two endpoints, with `limits` in their request models (so OpenAPI shows the bounds)."""
    routes = APIRouter(dependencies=[Depends(require_key)])
    SequenceQuery = api.sequence_query_model(limits)

    @routes.get("/homologs", response_model=api.HomologsResponse, responses={400: ERROR, 404: ERROR})
    def gene_homologs(
        state: State,
        gene: Annotated[api.Text, Query(min_length=1, max_length=200, description="symbol or ID, any case")],
        from_species: Annotated[api.Name, Query(alias="from")],
        to: Annotated[
            list[api.Name] | None,
            Query(max_length=limits.max_targets, description="target species (repeat; default: all others)"),
        ] = None,
        k: Annotated[int, Query(**api.number_bounds("k", high=limits.max_k))] = 10,
        evidence: Annotated[api.Evidence, Query(description="auto: the best the atlas holds")] = "auto",
        model: Annotated[api.Name | None, Query(description="default: the model the species is held under")] = None,
    ) -> api.HomologsResponse:
        """Top-k homolog candidates of one gene in each target species, from the mapping table, the
        alignments and the embedding neighbours, in `orthovec map`'s evidence order."""
        with state.lock:
            return homologs(
                state.atlas,
                gene,
                from_species,
                to=to,
                k=k,
                evidence=evidence,
                model=model,
                store=state.store,
                reader=state.reader,
                search=_searched(state),
            )

    @routes.post(
        "/homologs/sequence",
        response_model=api.SequenceResponse,
        responses={400: ERROR, 404: ERROR, 413: ERROR, 503: ERROR},
    )
    # The body model is built per server (its bounds), so to mypy it is a variable, not a type.
    def sequence_homologs(state: State, body: SequenceQuery) -> api.SequenceResponse:  # type: ignore[valid-type]
        """Top-k genes per target species for raw protein sequences: an MMseqs2 search of each
        species' proteome, fused with the embedding neighbours when the server has weights."""
        query: api.SequenceQuery = body
        search, embed = _searched(state), _embedded(state)
        if search is None and embed is None:
            raise Unavailable(NO_SEQUENCES)
        residues = sum(len(s.sequence) for s in query.sequences) * len(query.to)
        if search is not None and residues > limits.max_search_residues:
            raise Invalid(
                f"this search is too large: {residues:,} residues × target species, over this server's "
                f"{limits.max_search_residues:,}; send fewer or shorter sequences, or fewer species.",
                param="sequences",
            )
        with state.lock:
            answers = homologs_of_sequences(
                state.atlas,
                [(s.id, s.sequence) for s in query.sequences],
                to=query.to,
                k=query.k,
                evidence=query.evidence,
                model=query.model,
                store=state.store,
                reader=state.reader,
                embed=embed,
                search=search,
            )
        models = {a.model for a in answers if a.model}
        return api.SequenceResponse(
            model=next(iter(models), None),
            results=[
                api.SequenceHits(id=s.id, targets=a.targets, hits=a.hits)
                for s, a in zip(query.sequences, answers, strict=True)
            ],
        )

    return routes
