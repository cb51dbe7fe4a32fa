"""`GET /homologs` latency and throughput over loopback, 8 concurrent clients, vs direct calls.

    python benchmarks/api_latency.py [--genes 20000] [--dim 320] [--requests 2000] [--clients 8]

Two species of `--genes` random vectors (latency does not depend on the values) in the embedded
store, served by uvicorn on 127.0.0.1 in this process; clients are threads with keep-alive httpx
connections. The baseline is the same query as a direct library call (`homologs_of_gene`) in the
same run, so the ratio is the HTTP stack's cost.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from lookup.api import create_app
from lookup.query import homologs_of_gene
from lookup.store import EdgeStore
from schemas.atlas import Atlas
from schemas.tables import genes_table

MODEL = "esm2_t6_8M_UR50D"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return 1e3 * statistics.median(ordered), 1e3 * ordered[int(0.99 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(Atlas(Path(tmp)))
        for species in ("human", "mouse"):
            vectors = rng.normal(size=(args.genes, args.dim)).astype(np.float32)
            ids = [f"{species}{i}" for i in range(args.genes)]
            store.upsert_genes(
                MODEL, genes_table(species, ids, vectors, gene_symbols=[f"G{i}" for i in range(args.genes)])
            )
        store.optimize(MODEL)
        genes = [f"G{i}" for i in rng.integers(0, args.genes, size=args.requests)]

        direct = []
        for gene in genes[:300]:
            start = time.perf_counter()
            homologs_of_gene(store, gene, "human", ["mouse"], 10, MODEL)
            direct.append(time.perf_counter() - start)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(store, None), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        local = threading.local()

        def ask(gene: str) -> float:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            start = time.perf_counter()
            response = local.client.get("/homologs", params={"gene": gene, "from": "human", "to": "mouse", "k": 10})
            response.raise_for_status()
            return time.perf_counter() - start

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            latencies = list(pool.map(ask, genes))
        elapsed = time.perf_counter() - started
        server.should_exit = True
        thread.join(timeout=10)
        store.close()

    p50, p99 = _percentiles(latencies)
    d50, d99 = _percentiles(direct)
    print(f"{args.requests} GET /homologs, {args.clients} clients, 2 x {args.genes:,} genes (random {args.dim}-d)")
    print(f"HTTP   p50 {p50:.2f} ms  p99 {p99:.2f} ms  {args.requests / elapsed:,.0f} requests/s")
    print(f"direct p50 {d50:.2f} ms  p99 {d99:.2f} ms  (library call, one client)")
    print(f"HTTP p50 / direct p50 = {p50 / d50:.1f}x (includes queueing behind the store lock)")


if __name__ == "__main__":
    main()
