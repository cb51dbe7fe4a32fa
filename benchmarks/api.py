"""`GET /homologs` over HTTP: p50/p99 latency and requests/s with 8 concurrent clients on loopback.

    python benchmarks/api.py [--genes 20000] [--dim 320] [--requests 2000] [--clients 8]

Data: two species of `--genes` genes each, random `--dim`-d vectors (320 = ESM-2 8M's width;
latency does not depend on the values), in the embedded Qdrant Edge store of a temporary atlas.
The server is the real command, `orthovec serve --atlas TMP --port P`, in its own process; the
clients are threads with keep-alive httpx connections in this one. Queries: random gene symbols,
human → mouse, k = 10 (each also does the reverse search for the RBH flag).
Baseline in the same run: the same queries as direct `homologs_of_gene` calls (no HTTP), and the
HTTP path with one client; the ratios are the HTTP stack's cost and the gain from concurrency.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from orthovec.lookup.query import homologs_of_gene
from orthovec.lookup.store import EdgeStore
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import genes_table

MODEL = "esm2_t6_8M_UR50D"


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    ordered = np.sort(np.asarray(samples)) * 1e3
    return float(np.percentile(ordered, 50)), float(np.percentile(ordered, 99))


def build_atlas(root: Path, genes: int, dim: int, rng: np.random.Generator) -> None:
    store = EdgeStore(Atlas(root))
    for species in ("human", "mouse"):
        vectors = rng.normal(size=(genes, dim)).astype(np.float32)
        ids = [f"{species}{i}" for i in range(genes)]
        store.upsert_genes(MODEL, genes_table(species, ids, vectors, gene_symbols=[f"G{i}" for i in range(genes)]))
    store.optimize(MODEL)
    store.close()


def direct_latencies(root: Path, genes: list[str]) -> list[float]:
    store = EdgeStore(Atlas(root))
    try:
        homologs_of_gene(store, genes[0], "human", ["mouse"], 10, MODEL)  # open the shard
        latencies = []
        for gene in genes:
            start = time.perf_counter()
            homologs_of_gene(store, gene, "human", ["mouse"], 10, MODEL)
            latencies.append(time.perf_counter() - start)
        return latencies
    finally:
        store.close()  # the server process needs the store's lock


def http_run(base: str, genes: list[str], clients: int) -> tuple[list[float], float]:
    local = threading.local()

    def ask(gene: str) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=30)
        start = time.perf_counter()
        response = local.client.get("/homologs", params={"gene": gene, "from": "human", "to": "mouse", "k": 10})
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(ask, genes))
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20_000, help="genes per species")
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in rng.integers(0, args.genes, size=args.requests)]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "atlas"
        build_atlas(root, args.genes, args.dim, rng)
        direct = direct_latencies(root, genes[: min(500, len(genes))])

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "orthovec.cli", "serve", "--atlas", str(root), "--port", str(port)]
        server = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=2).raise_for_status()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("orthovec serve did not start") from None
                    time.sleep(0.2)
            http_run(base, genes[:100], args.clients)  # warm-up: connections, thread pool
            single, single_s = http_run(base, genes[:500], 1)
            latencies, elapsed = http_run(base, genes, args.clients)
        finally:
            server.terminate()
            server.wait(timeout=30)

    p50, p99 = percentiles_ms(latencies)
    s50, s99 = percentiles_ms(single)
    d50, d99 = percentiles_ms(direct)
    print(
        f"GET /homologs (human → mouse, k=10), 2 species x {args.genes:,} genes, "
        f"random {args.dim}-d vectors, embedded Qdrant Edge store, `orthovec serve` on loopback, "
        f"{os.cpu_count()} CPU cores"
    )
    print(
        f"{args.clients} clients  {args.requests:>5} requests  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
        f"{args.requests / elapsed:7.0f} requests/s"
    )
    print(
        f"1 client   {len(single):>5} requests  p50 {s50:6.2f} ms  p99 {s99:6.2f} ms  "
        f"{len(single) / single_s:7.0f} requests/s"
    )
    print(
        f"direct     {len(direct):>5} calls     p50 {d50:6.2f} ms  p99 {d99:6.2f} ms  "
        f"{len(direct) / sum(direct):7.0f} calls/s (homologs_of_gene, no HTTP)"
    )
    print(
        f"HTTP cost (1-client p50 / direct p50) {s50 / d50:.2f}x; "
        f"throughput {args.clients} clients / 1 client "
        f"{(args.requests / elapsed) / (len(single) / single_s):.2f}x"
    )


if __name__ == "__main__":
    main()
