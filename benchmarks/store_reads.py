"""A gene query's latency and temporary disk while a server holds the store and on a read-only
atlas, against the private-copy reads that orthovec used to make there, measured in the same run.

    python benchmarks/store_reads.py [--species 10] [--genes 20000] [--dim 1280] [--queries 30]
                                     [--copy-queries 5] [--cli-queries 10] [--out benchmarks/out/store_reads]

The synthetic atlas (random vectors: a search's cost does not depend on the values) goes through
the real load path (`orthovec.lookup.store.load.load_atlas`: upsert, remove stale, optimize) once
into `--out`, and is reused by later runs with the same shape. Each timed query is what one
`orthovec query GENE --from A --to B` asks of the store, with a fresh reader as a CLI process has:
open the store for reading, find the gene, its vector, the 11 nearest genes in B, their best hits
back in A (reciprocity), close. Scenarios:

- serving, HTTP: `orthovec serve` runs on the atlas (found through the URL it records there) and
  the query is its `GET /homologs`, as a query sent to the server costs end to end;
- serving, `orthovec query`: the command itself, a new process per query (start and imports
  included), which asks the server over HTTP (checked: the command logs that the server answered);
- serving: the server owns the Edge shard, so a reader beside it reads the gene tables (no copy);
- serving, old copy: the same query through a private copy of the shard in a temporary directory,
  as orthovec did before (the copy code is kept here, only as this baseline);
- read-only: the atlas bind-mounted read-only (`mount --bind -o ro`, needs root), reader as above,
  and `orthovec query` run on that mount (it reads the gene tables in place);
- read-only, old copy: the copy path on that mount;
- own shard: nothing else holds the shard, so the reader opens it (the reference for answers);
- process start: Python and the imports of `orthovec query`, with no query: the floor under the
  `orthovec query` rows.

Temporary disk is the peak size of the temporary directory (`TMPDIR` pointed at an empty folder
under `--out`) sampled every 10 ms during the queries. The answers of every scenario are compared
with the own-shard answers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from orthovec.lookup.store import EdgeStore, GeneStore, GeneTableStore, open_store, serving_url
from orthovec.lookup.store.load import load_atlas
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import GENES, genes_table, write_table

MODEL = "esm2_t33_650M_UR50D"
K = 10

#: A query's answer: (hit, its best hit back) gene IDs, and the hits' scores.
Answer = tuple[list[tuple[str, str]], list[float]]


def build_atlas(root: Path, n_species: int, n_genes: int, dim: int) -> Atlas:
    """Gene tables of random vectors, loaded into the embedded store through the real load path; reused."""
    atlas = Atlas(root)
    shape = {"species": n_species, "genes": n_genes, "dim": dim}
    stamp = root / "built.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == shape:
        return atlas
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    provenance = {"model": MODEL, "layer": 33, "weights_sha256": "0" * 64, "synthetic": True}
    started = time.perf_counter()
    for s in range(n_species):
        ids = [f"S{s}G{i:06d}" for i in range(n_genes)]
        vectors = rng.standard_normal((n_genes, dim), dtype=np.float32)
        table = genes_table(f"species{s}", ids, vectors, gene_symbols=[f"SYM{s}_{i}" for i in range(n_genes)])
        write_table(table, atlas.genes(f"species{s}", MODEL), GENES, provenance)
    written = time.perf_counter() - started
    store = open_store(atlas)
    try:
        load_atlas(atlas, store)
    finally:
        store.close()
    print(
        f"built {n_species} x {n_genes:,} genes x {dim} dims: tables {written:.0f} s, "
        f"load (upsert, optimize) {time.perf_counter() - started - written:.0f} s",
        flush=True,
    )
    stamp.write_text(json.dumps(shape))
    return atlas


def gene_query(store: GeneStore, gene: str, source: str, target: str) -> Answer:
    """What `orthovec query GENE --from SOURCE --to TARGET` asks of the store."""
    query = store.find_genes(MODEL, source, gene)[0]
    found = store.search(MODEL, store.gene_vectors(MODEL, source, [query.gene_id]), target, K + 1)[0]
    hits = found[:K]  # the one more is the last hit's margin
    back = store.search(MODEL, store.gene_vectors(MODEL, target, [h.gene_id for h in hits]), source, 1)
    pairs = [(h.gene_id, b[0].gene_id if b else "") for h, b in zip(hits, back, strict=True)]
    return pairs, [h.score for h in hits]


def same(answer: Answer, truth: Answer) -> bool:
    """Same genes in the same order (and best hits back, where the answer has them), scores equal to float rounding."""
    if len(answer[0]) != len(truth[0]):
        return False
    with_backs = any(back for _, back in answer[0])
    expected = truth[0] if with_backs else [(hit, "") for hit, _ in truth[0]]
    return answer[0] == expected and bool(np.allclose(answer[1], truth[1], atol=1e-4))


def fresh_reader(atlas: Atlas, expect: type) -> Callable[[str, str, str], Answer]:
    def ask(gene: str, source: str, target: str) -> Answer:
        store = open_store(atlas, read_only=True)
        try:
            assert isinstance(store, expect), f"expected {expect.__name__}, got {type(store).__name__}"
            return gene_query(store, gene, source, target)
        finally:
            store.close()

    return ask


# --- the removed path, kept only as this benchmark's baseline ------------------------------------


def _copy_sparse(source: str, target: str) -> None:
    """Copy a file keeping its holes (Edge's WAL segments are mostly holes), as orthovec did."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size, offset = os.fstat(src.fileno()).st_size, 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            while start < end:
                block = src.read(min(end - start, 2**20))
                dst.write(block)
                start += len(block)
            offset = end
        dst.truncate(size)
    shutil.copystat(source, target)


def copying_reader(atlas: Atlas) -> Callable[[str, str, str], Answer]:
    def ask(gene: str, source: str, target: str) -> Answer:
        copy = Path(tempfile.mkdtemp(prefix=f"orthovec-store-{os.getpid()}-"))
        try:
            shutil.copytree(atlas.qdrant(MODEL), copy / "qdrant" / MODEL, copy_function=_copy_sparse)
            store = EdgeStore(Atlas(copy), read_only=True)
            try:
                return gene_query(store, gene, source, target)
            finally:
                store.close()
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    return ask


# --- measuring -------------------------------------------------------------------------------------


def _allocated(directory: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we looked
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@contextmanager
def temp_peak(directory: Path) -> Iterator[list[int]]:
    """The peak bytes under `directory` while the block runs, sampled every 10 ms."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _allocated(directory))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], _allocated(directory))


def measure(
    name: str,
    ask: Callable[[str, str, str], Answer],
    queries: list[tuple[str, str, str]],
    temp: Path,
    truth: dict[tuple[str, str, str], Answer],
) -> dict[str, object]:
    ask(*queries[0])  # one unmeasured call: imports and the page cache, as a warm machine has them
    times, agree = [], 0
    with temp_peak(temp) as peak:
        for query in queries:
            started = time.perf_counter()
            answer = ask(*query)
            times.append(time.perf_counter() - started)
            agree += bool(truth) and same(answer, truth[query])
    ordered = sorted(times)
    row = {
        "scenario": name,
        "queries": len(times),
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "temp_peak_mb": peak[0] / 1e6,
        "same_answers": f"{agree}/{len(times)}" if truth else "(reference)",
    }
    print(
        f"  {name}: p50 {row['p50_s']:.3f} s, p95 {row['p95_s']:.3f} s, temp peak {row['temp_peak_mb']:,.0f} MB, "
        f"answers {row['same_answers']}",
        flush=True,
    )
    return row


HOLDER = (
    "import sys; from pathlib import Path; from orthovec.lookup.store import open_store;"
    "from orthovec.schemas.atlas import Atlas;"
    "store = open_store(Atlas(Path(sys.argv[1])), read_only=True); store.species_counts(sys.argv[2]);"
    "print(type(store).__name__, flush=True); sys.stdin.read(); store.close()"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def holding_server(atlas: Atlas) -> Iterator[str | None]:
    """`orthovec serve` on the atlas (it owns the shard) until the block ends; yields the URL it
    recorded in the atlas. When it cannot start, a process that opens the store as serve does
    holds the shard instead, and None is yielded."""
    port = _free_port()
    command = [sys.executable, "-m", "orthovec.cli", "serve", "--atlas", str(atlas.root), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while serving_url(atlas) is None and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    url = serving_url(atlas)
    if url is None:
        server.kill()
        reason = (server.communicate()[1] or "no record within 600 s").strip().splitlines()[-1:]
        print(f"  orthovec serve did not start ({' '.join(reason)}); a plain store holder stands in", flush=True)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(atlas.root), MODEL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "EdgeStore", "holder failed"
            yield None
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=120)
        return
    try:
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)


def http_reader(url: str) -> Callable[[str, str, str], Answer]:
    """`GET /homologs` on the running server: what a query sent to the server costs end to end."""

    def ask(gene: str, source: str, target: str) -> Answer:
        query = urllib.parse.urlencode({"gene": gene, "from": source, "to": target, "k": K, "evidence": "embedding"})
        with urllib.request.urlopen(f"{url}/homologs?{query}", timeout=120) as response:
            hits = json.loads(response.read())["hits"]
        return [(h["gene_id"], "") for h in hits], [h["score"] for h in hits]

    return ask


def cli_reader(atlas: Atlas, *, by_server: bool) -> Callable[[str, str, str], Answer]:
    """`orthovec query GENE --from A --to B --format json`, a new process each time, as a user runs
    it: process start and imports included. `by_server` says whether the running server must be
    the one that answered (the CLI logs it), so a silent fall-back to reading in place is caught."""

    def ask(gene: str, source: str, target: str) -> Answer:
        command = [sys.executable, "-m", "orthovec.cli", "query", gene, "--from", source, "--to", target]
        command += ["--k", str(K), "--evidence", "embedding", "--atlas", str(atlas.root), "--format", "json"]
        run = subprocess.run(command, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        asked = "Answered by the orthovec server" in run.stderr
        assert asked == by_server, f"expected {'the server' if by_server else 'a read in place'}: {run.stderr}"
        rows = json.loads(run.stdout)
        return [(row["gene_id"], "") for row in rows], [row["score"] for row in rows]

    return ask


def process_start(*_: str) -> Answer:
    """What every `orthovec query` process pays before it asks anything: Python and the imports."""
    subprocess.run([sys.executable, "-c", "import orthovec.cli, orthovec.lookup.homologs"], check=True)
    return [], []


@contextmanager
def read_only_mount(atlas: Atlas, where: Path) -> Iterator[Atlas | None]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(atlas.root), str(where)], capture_output=True)
    if mounted.returncode != 0:
        print(f"  read-only scenarios skipped: mount --bind -o ro failed ({mounted.stderr.decode().strip()})")
        yield None
        return
    try:
        yield Atlas(where)
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--species", type=int, default=10)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--copy-queries", type=int, default=5)
    parser.add_argument("--cli-queries", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/store_reads"))
    args = parser.parse_args()

    out = args.out.resolve()
    temp = out / "tmp"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    os.environ["TMPDIR"] = str(temp)
    tempfile.tempdir = str(temp)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}); load average at start {_load()}", flush=True)

    atlas = build_atlas(out / "atlas", args.species, args.genes, args.dim)
    shard_mb = _allocated(atlas.qdrant(MODEL)) / 1e6
    tables_mb = sum(_allocated(atlas.genes(s, MODEL).parent) for s in atlas.species_names()) / 1e6
    print(
        f"atlas: {args.species} species x {args.genes:,} genes x {args.dim} dims; Edge shard {shard_mb:,.0f} MB on "
        f"disk, gene tables {tables_mb:,.0f} MB",
        flush=True,
    )

    rng = np.random.default_rng(1)
    queries = []
    for _ in range(args.queries):
        source, target = rng.choice(args.species, size=2, replace=False)
        queries.append((f"SYM{source}_{rng.integers(args.genes)}", f"species{source}", f"species{target}"))
    copy_queries, cli_queries = queries[: args.copy_queries], queries[: args.cli_queries]

    own = fresh_reader(atlas, EdgeStore)
    truth = {query: own(*query) for query in queries}
    rows = [measure("own shard (reference)", own, queries, temp, {})]
    rows.append(measure("process start: imports of orthovec query", process_start, cli_queries, temp, {}))
    with holding_server(atlas) as url:
        if url is not None:
            rows.append(measure(f"serving: HTTP GET /homologs ({url})", http_reader(url), queries, temp, truth))
            cli = cli_reader(atlas, by_server=True)
            rows.append(measure("serving: orthovec query (asks the server)", cli, cli_queries, temp, truth))
        rows.append(measure("serving: gene tables", fresh_reader(atlas, GeneTableStore), queries, temp, truth))
        rows.append(measure("serving: old private copy", copying_reader(atlas), copy_queries, temp, truth))
    with read_only_mount(atlas, out / "read-only") as view:
        if view is not None:
            tables = fresh_reader(view, GeneTableStore)
            rows.append(measure("read-only: gene tables", tables, queries, temp, truth))
            cli = cli_reader(view, by_server=False)
            rows.append(measure("read-only: orthovec query (gene tables)", cli, cli_queries, temp, truth))
            rows.append(measure("read-only: old private copy", copying_reader(view), copy_queries, temp, truth))
    leftover = _allocated(temp)

    print(f"\nload average at end {_load()}; temporary directory after the run: {leftover / 1e6:,.1f} MB")
    by_name = {row["scenario"]: row for row in rows}
    for place in ("serving", "read-only"):
        new, old = by_name.get(f"{place}: gene tables"), by_name.get(f"{place}: old private copy")
        if new and old:
            print(
                f"{place}: p50 {new['p50_s']:.3f} s vs {old['p50_s']:.3f} s with a copy "
                f"({float(old['p50_s']) / float(new['p50_s']):.1f}x faster); temp peak "
                f"{new['temp_peak_mb']:,.0f} MB vs {old['temp_peak_mb']:,.0f} MB"
            )
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
