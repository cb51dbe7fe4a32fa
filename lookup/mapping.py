"""Cross-species mapping tables from gene vectors: top-k, RBH, one-to-one, many-to-many, groups.

One row per candidate pair (a gene's top-k hit in either direction) with:
- `rank_ab` / `rank_ba`: the pair's rank among A's hits in B and among B's hits in A (null when
  outside the top-k), `is_rbh` when both are 1;
- `is_one2one_greedy` (global greedy, the literature's method) and `is_one2one_optimal`
  (maximum total score);
- the many-to-many homology graph: a pair belongs to it when its score is at least `min_score`
  and within `margin` of the best score of *both* its genes (each gene's near-best partners,
  mutually, so paralogs join a group without chaining unrelated genes into it); `relation` and
  `group_id` describe that graph and are null for pairs outside it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from orthovec.lookup.homology_graph import groups, relations
from orthovec.lookup.one2one import greedy_one2one, optimal_one2one
from orthovec.lookup.similarity import Metric, blocked_topk, prepare
from orthovec.lookup.store import embedding_matrix
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import GENES, HOMOLOGY_GROUPS, MAPPING, read_provenance, read_table, write_table
from scipy.sparse.csgraph import connected_components

from orthovec import __version__


@dataclass(frozen=True)
class MappingParams:
    k: int = 10
    metric: Metric = "cosine"
    margin: float = 0.02
    min_score: float = 0.0


@dataclass(frozen=True)
class PairSummary:
    species_a: str
    species_b: str
    genes_a: int
    genes_b: int
    candidates: int
    rbh: int
    one2one_greedy: int
    one2one_optimal: int
    homology_pairs: int
    groups: int
    seconds: float
    path: str


def build_mapping(genes_a: pa.Table, genes_b: pa.Table, params: MappingParams, model: str) -> pa.Table:
    """The MAPPING table between two GENES tables."""
    a = prepare(embedding_matrix(genes_a), params.metric)
    b = prepare(embedding_matrix(genes_b), params.metric)
    n, m = len(a), len(b)
    top = blocked_topk(a, b, params.k)
    k_ab, k_ba = top.a_to_b.shape[1], top.b_to_a.shape[1]

    # Union of both directions' top-k, keyed by row * m + col.
    keys_ab = np.repeat(np.arange(n), k_ab) * m + top.a_to_b.ravel()
    keys_ba = top.b_to_a.ravel() * m + np.repeat(np.arange(m), k_ba)
    keys = np.unique(np.concatenate([keys_ab, keys_ba]))
    rows, cols = keys // m, keys % m
    rank_ab = _ranks(keys, keys_ab, k_ab)
    rank_ba = _ranks(keys, keys_ba, k_ba)
    scores = (a[rows] * b[cols]).sum(dim=1).numpy()

    best_a = top.a_to_b_score[:, 0][rows]
    best_b = top.b_to_a_score[:, 0][cols]
    in_graph = (scores >= params.min_score) & (scores >= best_a - params.margin) & (scores >= best_b - params.margin)

    def row_scores(row: int, free: np.ndarray) -> np.ndarray:
        return (b[free] @ a[row]).numpy()

    greedy = greedy_one2one(top.a_to_b, top.a_to_b_score, row_scores, m)
    greedy_keys = np.array([r * m + c for r, c, _ in greedy], dtype=np.int64)
    # A greedy pair outside the candidate union (a gene whose top-k were all taken) is added.
    extra = np.setdiff1d(greedy_keys, keys)
    if len(extra):
        keys = np.concatenate([keys, extra])
        rows, cols = np.concatenate([rows, extra // m]), np.concatenate([cols, extra % m])
        extra_scores = (a[extra // m] * b[extra % m]).sum(dim=1).numpy()
        scores = np.concatenate([scores, extra_scores])
        rank_ab = np.concatenate([rank_ab, np.full(len(extra), -1)])
        rank_ba = np.concatenate([rank_ba, np.full(len(extra), -1)])
        in_graph = np.concatenate([in_graph, np.zeros(len(extra), dtype=bool)])
    is_greedy = np.isin(keys, greedy_keys)
    is_optimal = np.zeros(len(keys), dtype=bool)
    is_optimal[optimal_one2one(rows, cols, scores, n, m)] = True

    relation = np.full(len(keys), None, dtype=object)
    group_id = np.full(len(keys), -1, dtype=np.int64)
    graph_edges = np.flatnonzero(in_graph)
    relation[graph_edges] = relations(rows[graph_edges], cols[graph_edges])
    group_id[graph_edges] = groups(rows[graph_edges], cols[graph_edges])

    order = np.lexsort((cols, -scores, rows))  # by A gene, best hit first
    ids_a, ids_b = (
        genes_a.column("gene_id").to_numpy(zero_copy_only=False),
        genes_b.column("gene_id").to_numpy(zero_copy_only=False),
    )
    sym_a = genes_a.column("gene_symbol").to_numpy(zero_copy_only=False)
    sym_b = genes_b.column("gene_symbol").to_numpy(zero_copy_only=False)
    species_a, species_b = genes_a.column("species")[0].as_py(), genes_b.column("species")[0].as_py()
    r, c = rows[order], cols[order]
    table = pa.table(
        {
            "species_a": pa.array([species_a] * len(order), pa.string()),
            "gene_id_a": pa.array(ids_a[r], pa.string()),
            "gene_symbol_a": pa.array(sym_a[r], pa.string()),
            "species_b": pa.array([species_b] * len(order), pa.string()),
            "gene_id_b": pa.array(ids_b[c], pa.string()),
            "gene_symbol_b": pa.array(sym_b[c], pa.string()),
            "score": pa.array(scores[order], pa.float32()),
            "rank_ab": pa.array(rank_ab[order], pa.int32(), mask=rank_ab[order] < 0),
            "rank_ba": pa.array(rank_ba[order], pa.int32(), mask=rank_ba[order] < 0),
            "is_rbh": pa.array((rank_ab[order] == 1) & (rank_ba[order] == 1)),
            "relation": pa.array(relation[order], pa.string()),
            "group_id": pa.array(group_id[order], pa.int64(), mask=group_id[order] < 0),
            "source": pa.array([f"orthovec:{model}:{params.metric}"] * len(order), pa.string()),
            "is_one2one_greedy": pa.array(is_greedy[order]),
            "is_one2one_optimal": pa.array(is_optimal[order]),
            "margin_a": pa.array((top.a_to_b_score[:, 0][rows] - scores)[order], pa.float32()),
        }
    )
    return MAPPING.validate(table, f"{species_a}__{species_b}")


def _ranks(keys: np.ndarray, ranked_keys: np.ndarray, k: int) -> np.ndarray:
    """1-based rank of each key within its gene's top-k list, -1 when absent."""
    ranks = np.full(len(keys), -1, dtype=np.int64)
    position = np.searchsorted(keys, ranked_keys)
    ranks[position] = np.tile(np.arange(1, k + 1), len(ranked_keys) // k) if k else ranks[position]
    return ranks


def choose_mapping_model(atlas: Atlas, species: Sequence[str], model: str | None) -> str:
    """The model every species was indexed with (or the requested one), with clear errors."""
    known = atlas.species_names()
    if not known:
        raise UserError(f"The atlas {atlas.root} is empty: index proteomes with `orthovec index` first.")
    for name in species:
        if name not in known:
            raise UserError(f"Unknown species '{name}' in {atlas.root}; it holds: {', '.join(known)}.")
    models = {name: set(atlas.models_for(name)) for name in species}
    if model:
        missing = [name for name, found in models.items() if model not in found]
        if missing:
            raise UserError(f"No {model} gene vectors for {', '.join(missing)} (indexed: {_describe(models)}).")
        return model
    shared = set.intersection(*models.values())
    if len(shared) == 1:
        return shared.pop()
    if not shared:
        raise UserError(
            f"Mismatched models: the species were indexed with different models ({_describe(models)}); "
            "vectors from different models are not comparable. Index them with one model."
        )
    raise UserError(f"Several models are shared ({', '.join(sorted(shared))}); choose one with --model.")


def _describe(models: dict[str, set[str]]) -> str:
    return "; ".join(f"{name}: {', '.join(sorted(found)) or 'none'}" for name, found in models.items())


def map_species(
    atlas: Atlas,
    species: Sequence[str],
    model: str | None = None,
    params: MappingParams = MappingParams(),
    out: Path | None = None,
) -> list[PairSummary]:
    """Map every pair of species (A before B as given), write the tables, return summaries."""
    if len(species) < 2 or len(set(species)) != len(species):
        raise UserError("Give at least two different species to map.")
    if out and len(species) > 2:
        raise UserError("--out names one file, so it only works for one pair of species.")
    model = choose_mapping_model(atlas, species, model)
    genes = {name: read_table(atlas.genes(name, model), GENES) for name in species}
    weights = {name: read_provenance(atlas.genes(name, model)).get("weights_sha256") for name in species}
    summaries: list[PairSummary] = []
    tables: dict[tuple[str, str], pa.Table] = {}
    for species_a, species_b in itertools.combinations(species, 2):
        started = time.perf_counter()
        table = build_mapping(genes[species_a], genes[species_b], params, model)
        seconds = time.perf_counter() - started
        target = out or atlas.mapping(model, species_a, species_b)
        provenance = {
            "model": model,
            "metric": params.metric,
            "k": params.k,
            "margin": params.margin,
            "min_score": params.min_score,
            "orthovec": __version__,
            "weights_sha256": {species_a: weights[species_a], species_b: weights[species_b]},
        }
        write_table(table, target, MAPPING, provenance)
        tables[(species_a, species_b)] = table
        summaries.append(_summary(table, species_a, species_b, genes, seconds, str(target)))
    if len(species) > 2:
        write_table_groups(atlas, model, species, tables)
    return summaries


def _summary(table: pa.Table, a: str, b: str, genes: dict[str, pa.Table], seconds: float, path: str) -> PairSummary:
    group_ids = table.column("group_id").drop_null()
    return PairSummary(
        species_a=a,
        species_b=b,
        genes_a=genes[a].num_rows,
        genes_b=genes[b].num_rows,
        candidates=table.num_rows,
        rbh=int(np.sum(table.column("is_rbh").to_numpy(zero_copy_only=False))),
        one2one_greedy=int(np.sum(table.column("is_one2one_greedy").to_numpy(zero_copy_only=False))),
        one2one_optimal=int(np.sum(table.column("is_one2one_optimal").to_numpy(zero_copy_only=False))),
        homology_pairs=len(group_ids),
        groups=len(set(group_ids.to_pylist())),
        seconds=seconds,
        path=path,
    )


def write_table_groups(
    atlas: Atlas, model: str, species: Sequence[str], tables: dict[tuple[str, str], pa.Table]
) -> None:
    """Multi-species table: one row per homology group of the union graph, one column per species."""
    nodes: dict[tuple[str, str], int] = {}
    symbols: dict[tuple[str, str], str | None] = {}
    edges_a, edges_b = [], []
    for table in tables.values():
        graph = table.filter(table.column("group_id").is_valid())
        for row in graph.select(
            ["species_a", "gene_id_a", "gene_symbol_a", "species_b", "gene_id_b", "gene_symbol_b"]
        ).to_pylist():
            left = (row["species_a"], row["gene_id_a"])
            right = (row["species_b"], row["gene_id_b"])
            symbols[left], symbols[right] = row["gene_symbol_a"], row["gene_symbol_b"]
            edges_a.append(nodes.setdefault(left, len(nodes)))
            edges_b.append(nodes.setdefault(right, len(nodes)))
    if not nodes:
        return
    graph = sp.coo_matrix((np.ones(len(edges_a)), (edges_a, edges_b)), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, dict[str, list[str]]] = {}
    for (name, gene), index in nodes.items():
        members.setdefault(int(labels[index]), {s: [] for s in species})[name].append(gene)
    ordered = sorted(members.values(), key=lambda group: [sorted(group[s]) for s in species])
    provenance = {"model": model, "species": list(species), "orthovec": __version__}
    columns: dict[str, object] = {"group_id": pa.array(range(len(ordered)), pa.int64())}
    columns["n_species"] = pa.array([sum(bool(g[s]) for s in species) for g in ordered], pa.int32())
    for name in species:
        columns[name] = pa.array([sorted(g[name]) for g in ordered], pa.list_(pa.string()))
        columns[f"{name}_symbols"] = pa.array(
            [[symbols[(name, gene)] or gene for gene in sorted(g[name])] for g in ordered],
            pa.list_(pa.string()),
        )
    write_table(pa.table(columns), atlas.multi_mapping(model, list(species)), HOMOLOGY_GROUPS, provenance)
