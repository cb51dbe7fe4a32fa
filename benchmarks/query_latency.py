"""Query latency and recall of the embedded store, against brute force measured in the same run.

    python benchmarks/query_latency.py [--species 1 10] [--genes 20000] [--dim 320] [--queries 300]
                                       [--human-genes ATLAS/species/human/genes/MODEL.parquet]

Each species holds `--genes` random vectors (random vectors are fine for latency and recall:
Qdrant's cost does not depend on the values); with `--human-genes`, the first species is a real
gene table instead. Reported per store size:
- p50/p99 of `GeneStore.search` within one species (the default path: exact search, since a
  proteome is ~20k genes), and of HNSW search over the whole store (no species filter);
- recall@10 of each path against exact brute force (numpy, float64);
- p50/p99 of a full `homologs_of_gene` query (gene lookup + search + reciprocal check);
- the same search done by numpy brute force over the species matrix, as the ratio baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from orthovec.lookup.query import homologs_of_gene
from orthovec.lookup.store import EdgeStore, embedding_matrix
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import GENES, genes_table, read_table

MODEL = "esm2_t6_8M_UR50D"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return 1e3 * statistics.median(ordered), 1e3 * ordered[int(0.99 * (len(ordered) - 1))]


def _timed(fn, queries: np.ndarray) -> tuple[list[float], list]:
    times, results = [], []
    for query in queries:
        start = time.perf_counter()
        results.append(fn(query))
        times.append(time.perf_counter() - start)
    return times, results


def _recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def run(n_species: int, n_genes: int, dim: int, n_queries: int, human_genes: Path | None) -> dict[str, float]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Atlas(Path(tmp)))
        matrices: dict[str, tuple[np.ndarray, list[str]]] = {}
        for s in range(n_species):
            name = f"species{s}"
            if s == 0 and human_genes is not None:
                table = read_table(human_genes, GENES)
                table = genes_table(name, table.column("gene_id").to_pylist(), embedding_matrix(table))
            else:
                vectors = rng.normal(size=(n_genes, dim)).astype(np.float32)
                table = genes_table(name, [f"{name}_g{i}" for i in range(n_genes)], vectors)
            store.upsert_genes(MODEL, table)
            matrices[name] = (embedding_matrix(table), table.column("gene_id").to_pylist())
        started = time.perf_counter()
        store.optimize(MODEL)
        optimize_s = time.perf_counter() - started

        target = "species1" if n_species > 1 else "species0"
        source = "species0"
        target_matrix, target_ids = matrices[target]
        normed = target_matrix / np.linalg.norm(target_matrix, axis=1, keepdims=True)
        queries = matrices[source][0][rng.choice(len(matrices[source][1]), n_queries, replace=False)]

        def brute(query: np.ndarray) -> list[str]:
            scores = normed @ (query / np.linalg.norm(query))
            top = np.argpartition(-scores, 10)[:10]
            return [target_ids[i] for i in top[np.argsort(-scores[top])]]

        brute_t, truth = _timed(brute, queries)
        exact_t, exact_hits = _timed(lambda q: store.search(MODEL, q, target, 10)[0], queries)
        hnsw_t, hnsw_hits = _timed(lambda q: store.search(MODEL, q, target, 10, exact=False)[0], queries)
        all_t, _ = _timed(lambda q: store.search(MODEL, q, None, 10)[0], queries)
        gene_names = matrices[source][1][:n_queries]
        gene_t, _ = _timed(
            lambda g: homologs_of_gene(store, g, from_species=source, to_species=[target], k=10, model=MODEL),
            np.array(gene_names, dtype=object),
        )
        store.close()

    row = {
        "species": n_species,
        "points": sum(len(ids) for _, ids in matrices.values()),
        "optimize_s": optimize_s,
        "numpy_p50": _percentiles(brute_t)[0],
        "exact_p50": _percentiles(exact_t)[0],
        "exact_p99": _percentiles(exact_t)[1],
        "exact_recall": _recall([[g.gene_id for g in h] for h in exact_hits], truth),
        "hnsw_p50": _percentiles(hnsw_t)[0],
        "hnsw_p99": _percentiles(hnsw_t)[1],
        "hnsw_recall": _recall([[g.gene_id for g in h] for h in hnsw_hits], truth),
        "all_species_p50": _percentiles(all_t)[0],
        "gene_query_p50": _percentiles(gene_t)[0],
        "gene_query_p99": _percentiles(gene_t)[1],
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--human-genes", type=Path)
    args = parser.parse_args()
    rows = [run(n, args.genes, args.dim, args.queries, args.human_genes) for n in args.species]
    header = (
        f"{'species':>7} {'points':>8} {'numpy p50':>9} {'exact p50/p99 ms':>17} {'recall':>6} "
        f"{'hnsw p50/p99 ms':>16} {'recall':>6} {'all-sp p50':>10} {'gene query p50/p99':>19} {'vs numpy':>8}"
    )
    print(header)
    for r in rows:
        cells = [
            f"{r['species']:>7} {r['points']:>8} {r['numpy_p50']:>9.2f}",
            f"{r['exact_p50']:>8.2f}/{r['exact_p99']:<8.2f} {r['exact_recall']:>6.3f}",
            f"{r['hnsw_p50']:>7.2f}/{r['hnsw_p99']:<8.2f} {r['hnsw_recall']:>6.3f}",
            f"{r['all_species_p50']:>10.2f} {r['gene_query_p50']:>9.2f}/{r['gene_query_p99']:<9.2f}",
            f"{r['numpy_p50'] / r['exact_p50']:>7.2f}x",
        ]
        print(" ".join(cells))
    print("vs numpy = numpy brute-force p50 / store exact-search p50 (same queries, same run).")


if __name__ == "__main__":
    main()
