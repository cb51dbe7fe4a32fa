"""Genes by name, and their nearest genes in embedding space: two sources the homolog service uses.

Each embedding neighbour carries its cosine score, rank, the margin to the next neighbour (a small
margin means the call is ambiguous, e.g. between paralogs) and whether it is a reciprocal best
hit (RBH): the target's own best hit back in the source species is the query gene, the classic
orthology criterion. `orthovec.lookup.homologs` joins these with the alignment and mapping
evidence; front ends call that service, not this module.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from orthovec.lookup.store import GeneStore, StoredGene
from orthovec.schemas.errors import Ambiguous, NotFound


@dataclass(frozen=True)
class GeneRef:
    """A gene of one species, as the atlas or the store names it."""

    species: str
    gene_id: str
    gene_symbol: str | None


@dataclass(frozen=True)
class Hit:
    """One embedding neighbour of a query vector in one species."""

    species: str
    gene_id: str
    gene_symbol: str | None
    score: float
    rank: int
    is_rbh: bool
    margin: float | None
    query_species: str | None
    query_gene_id: str | None
    query_gene_symbol: str | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def choose_model(store: GeneStore, model: str | None) -> str:
    """The requested model, or the only one the store holds."""
    models = store.models()
    if model:
        if model not in models:
            raise NotFound(f"No vectors for model '{model}' in the store (it holds: {', '.join(models) or 'nothing'}).")
        return model
    if not models:
        raise NotFound("The store holds no gene vectors yet. Index a proteome with `orthovec index` first.")
    if len(models) > 1:
        raise Ambiguous("The store holds several models; choose one.", param="model", choices=models)
    return models[0]


def unknown_species(name: str, known: Iterable[str], where: str) -> NotFound:
    """The error for a species name `where` does not hold, with the close matches."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return NotFound(f"Unknown species '{name}' {where}.{hint} It holds: {', '.join(names) or 'no species'}.")


def check_species(store: GeneStore, model: str, species: Sequence[str]) -> dict[str, int]:
    """Counts per species in the store; unknown names fail with the close matches."""
    known = store.species_counts(model)
    for name in species:
        if name not in known:
            raise unknown_species(name, known, f"for model {model}")
    return known


def pick_gene(name: str, species: str, candidates: Sequence[GeneRef], names: Iterable[str]) -> GeneRef:
    """The gene `name` (symbol or ID, any case) means among `candidates`; exact-case matches win.

    Species differ in case conventions (human TP53, mouse Trp53, zebrafish tp53), so matching is
    case-insensitive; an input that still names several genes lists them instead of guessing.
    `names` (every symbol or ID of the species) is read only when nothing matched, for the hint.
    """
    if not candidates:
        ordered = sorted(set(names))
        close = difflib.get_close_matches(name, ordered, n=5, cutoff=0.6)
        close += [n for n in ordered if n.upper() == name.upper() and n not in close]
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise NotFound(f"No gene '{name}' in {species}.{hint}")
    exact = [g for g in candidates if name in (g.gene_id, g.gene_symbol)]
    chosen = exact or list(candidates)
    if len({g.gene_id for g in chosen}) > 1:
        listing = ", ".join(f"{g.gene_symbol} ({g.gene_id})" for g in chosen[:10])
        raise Ambiguous(f"'{name}' is ambiguous in {species}: {listing}. Query by gene ID instead.")
    return chosen[0]


def _ref(gene: StoredGene) -> GeneRef:
    return GeneRef(gene.species, gene.gene_id, gene.gene_symbol)


def resolve_gene(store: GeneStore, model: str, species: str, name: str) -> GeneRef:
    """A gene of the store by symbol or ID (see `pick_gene`)."""
    candidates = [_ref(g) for g in store.find_genes(model, species, name)]
    names = (g.gene_symbol or g.gene_id for g in store.list_genes(model, species)) if not candidates else ()
    return pick_gene(name, species, candidates, names)


def search_vectors(
    store: GeneStore,
    model: str,
    vectors: np.ndarray,
    targets: Sequence[str],
    k: int,
    source_species: str | None,
    query_genes: Sequence[GeneRef | None],
) -> list[list[Hit]]:
    """Top-k hits per query vector in each target species, with margins and RBH flags.

    RBH needs a reverse search from each target's best hit into the source species; only a rank-1
    hit can be reciprocal, so that is one extra (batched) search per target species. In the query
    gene's own species the gene itself is left out: its neighbours there are its paralogs, and no
    paralog is a reciprocal best hit.
    """
    results: list[list[Hit]] = [[] for _ in range(len(vectors))]
    for target in targets:
        own = target == source_species
        found = store.search(model, vectors, target, k + 1 + own)  # one extra hit for the last margin
        if own:
            found = [
                [g for g in hits if query is None or g.gene_id != query.gene_id][: k + 1]
                for hits, query in zip(found, query_genes, strict=True)
            ]
        reciprocal: list[str | None] = [None] * len(vectors)
        if source_species is not None and not own:
            best = [hits[0] for hits in found if hits]
            rows = [i for i, hits in enumerate(found) if hits]
            if best:
                back_vectors = store.gene_vectors(model, target, [g.gene_id for g in best])
                back = store.search(model, back_vectors, source_species, 1)
                for row, hits in zip(rows, back, strict=True):
                    reciprocal[row] = hits[0].gene_id if hits else None
        for row, hits in enumerate(found):
            query = query_genes[row]
            for rank, gene in enumerate(hits[:k], start=1):
                margin = gene.score - hits[rank].score if rank < len(hits) else None
                results[row].append(
                    Hit(
                        species=gene.species,
                        gene_id=gene.gene_id,
                        gene_symbol=gene.gene_symbol,
                        score=round(float(gene.score), 6),
                        rank=rank,
                        is_rbh=rank == 1 and query is not None and reciprocal[row] == query.gene_id,
                        margin=None if margin is None else round(float(margin), 6),
                        query_species=query.species if query else None,
                        query_gene_id=query.gene_id if query else None,
                        query_gene_symbol=query.gene_symbol if query else None,
                    )
                )
    return results


def homologs_of_gene(
    store: GeneStore,
    gene: str,
    from_species: str,
    to_species: Sequence[str] | None = None,
    k: int = 10,
    model: str | None = None,
) -> list[Hit]:
    """Embedding neighbours of one gene in each target species (default: every other species)."""
    model = choose_model(store, model)
    known = check_species(store, model, [from_species, *(to_species or [])])
    targets = list(to_species) if to_species else sorted(s for s in known if s != from_species)
    if not targets:
        raise NotFound(f"No other species than {from_species} in the store: index a second proteome first.")
    query = resolve_gene(store, model, from_species, gene)
    vector = store.gene_vectors(model, from_species, [query.gene_id])
    return search_vectors(store, model, vector, targets, k, from_species, [query])[0]
