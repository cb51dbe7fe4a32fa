"""`orthovec query` on real proteomes: top-1 agreement with Ensembl one2one, and one answer through
the command line, HTTP and Python (issue 18's Done-when).

    python benchmarks/query_agreement.py [--atlas benchmarks/out/service_atlas] [--threads 2]
                                         [--genes N] [--subprocess 20] [--port 8765]

The atlas holds human and mouse from ../shared/data/proteomes/ indexed without embeddings
(`index --no-embed`: no pretrained weights exist here, so only alignment evidence means anything),
aligned (`align --threads T`, the default adaptive search) and mapped (`map`, default evidence);
missing steps are run first, finished ones reused. `--atlas` may name one whose species were
indexed with weights (the issue's tiny random checkpoint: `orthovec index ... --weights TINY.pt`,
then `align` and `map`), where `auto` ranks by fused evidence; the summary says which it used.

Scored genes: the human genes of the Ensembl one2one pairs whose two genes are in the proteome files
(case-insensitive symbols; the 13,748 pairs docs/mapping.md scores `map` on). Each is queried by its
gene ID, `--to mouse`, default evidence (`auto`); it agrees when the rank-1 mouse hit has the Ensembl
partner's symbol. A gene with no hit counts as a disagreement.

The same genes go through three paths and their rows (every `Homolog` field) must be identical
(`--compare N`: only N evenly spaced genes through the first two, which open the embedded store on
each call; every gene goes through the server, and agreement is printed for both sets):
- `ov.query` in this process;
- the `orthovec query ... --format json` command, run in this process through click (the command's
  code, minus the interpreter start; `--subprocess N` more genes also run as real processes);
- `GET /homologs` of a real `orthovec serve` over a socket (started after the two others, since a
  query beside a running server would ask it).
Sequences with no weights: `--sequences N` of the scored genes (evenly spaced), each gene's longest
human protein with 10% of its positions changed (seeded), sent `--to mouse` as one FASTA file to
`orthovec query --fasta` (a real process) and as one `POST /homologs/sequence`; counted as agreeing
when the rank-1 mouse gene is the Ensembl partner, and the two answers' rows must be identical.
Prints agreement, n scored, identical rows per path, per-query p50 of each path, machine and load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.diverged, run from anywhere

import polars as pl
from align_quality import DATA, ensembl_truth, proteome  # benchmarks/align_quality.py
from click.testing import CliRunner

import orthovec as ov
from orthovec.cli import main as cli_main
from orthovec.schemas.api import ApiLimits, Homolog
from orthovec.schemas.atlas import Atlas
from tests.diverged import mutated  # the planted divergence the tests use

OUT = Path(__file__).resolve().parent / "out"
FIELDS = list(Homolog.model_fields)
#: The console script installed beside this interpreter.
ORTHOVEC = str(Path(sys.executable).parent / "orthovec")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def build(atlas: Atlas, threads: int) -> None:
    """Index, align and map whatever the atlas lacks."""
    for species in ("human", "mouse"):
        if not atlas.proteins(species).is_file():
            started = time.perf_counter()
            ov.index_proteome(proteome(species), species, atlas=atlas, embed=False)
            print(f"indexed {species} (--no-embed) in {time.perf_counter() - started:.0f} s", flush=True)
    if not (atlas.root / "alignments" / "human__mouse.parquet").is_file():
        started = time.perf_counter()
        ov.align_species("human", "mouse", atlas=atlas, threads=threads)
        print(f"aligned human x mouse in {time.perf_counter() - started:.0f} s", flush=True)
    if not list((atlas.root / "mappings").glob("*/human__mouse.parquet")):
        started = time.perf_counter()
        ov.map_species(["human", "mouse"], atlas=atlas)
        print(f"mapped human x mouse in {time.perf_counter() - started:.0f} s", flush=True)


def scored_genes(atlas: Atlas, limit: int | None) -> list[tuple[str, str, str]]:
    """(human gene ID, human symbol, Ensembl one2one mouse symbol) of every scorable pair."""
    truth = ensembl_truth(atlas.root).filter(pl.col("relation") == "one2one")
    pairs = truth.select(
        pl.col("gene_symbol_a").str.to_uppercase().alias("a"), pl.col("gene_symbol_b").str.to_uppercase().alias("b")
    ).unique(maintain_order=True)
    proteins = pl.read_parquet(atlas.proteins("human"), columns=["gene_id", "gene_symbol"]).unique("gene_id")
    ids = proteins.group_by(pl.col("gene_symbol").str.to_uppercase().alias("a")).agg(pl.col("gene_id").sort().first())
    genes = pairs.join(ids, on="a", how="left").sort("a")
    missing = genes.filter(pl.col("gene_id").is_null()).height
    assert missing == 0, f"{missing} reference human symbols without a gene in the atlas"
    rows = [(gene_id, a, b) for a, b, gene_id in genes.iter_rows()]
    return rows[:limit] if limit else rows


def mutated_proteins(atlas: Atlas, genes: list[tuple[str, str, str]], n: int) -> list[tuple[str, str, str]]:
    """(human gene ID, Ensembl mouse symbol, 10%-mutated longest protein) of `n` evenly spaced genes
    (among those whose protein the server takes: at most 5,000 residues)."""
    proteins = pl.read_parquet(atlas.proteins("human"), columns=["gene_id", "sequence"])
    longest = proteins.sort(pl.col("sequence").str.len_chars(), descending=True).unique("gene_id", keep="first")
    sequence = dict(longest.iter_rows())
    fitting = [gene for gene in genes if len(sequence[gene[0]]) <= ApiLimits().max_sequence_length]
    chosen = fitting[:: max(1, len(fitting) // n)][:n]
    return [(gene_id, b, mutated(sequence[gene_id], 0.10, seed=i)) for i, (gene_id, _, b) in enumerate(chosen)]


def rows_of(hits: list[dict]) -> list[dict]:
    return [{key: hit[key] for key in FIELDS} for hit in hits]


def timed(samples: list[float], started: float) -> None:
    samples.append(time.perf_counter() - started)


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


class Server:
    """`orthovec serve` on the atlas, in its own process, asked over one kept-alive connection."""

    def __init__(self, atlas: Atlas, port: int) -> None:
        self.port = port
        command = [ORTHOVEC, "serve", "--atlas", str(atlas.root), "--port", str(port)]
        self.log = (OUT / "query_agreement_serve.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            assert self.process.poll() is None, f"orthovec serve exited; see {self.log.name}"
            try:
                self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                self.connection.request("GET", "/health")
                if self.connection.getresponse().read() and time.monotonic() < deadline:
                    break
            except OSError:
                assert time.monotonic() < deadline, "orthovec serve did not answer within 300 s"
                time.sleep(0.5)

    def homologs(self, gene: str, k: int) -> dict:
        query = urllib.parse.urlencode({"gene": gene, "from": "human", "to": "mouse", "k": k})
        for attempt in (1, 2):
            try:
                self.connection.request("GET", f"/homologs?{query}")
                response = self.connection.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, OSError):
                if attempt == 2:
                    raise
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        assert response.status == 200, f"GET /homologs {gene}: {response.status} {body[:300]!r}"
        return json.loads(body)

    def sequences(self, records: list[tuple[str, str, str]], k: int) -> list[dict]:
        """The records in as few requests as the server's limits allow (32 sequences, 50,000 residues)."""
        limits = ApiLimits()
        batches: list[list[tuple[str, str, str]]] = [[]]
        for record in records:
            batch = batches[-1]
            residues = sum(len(q) for _, _, q in batch) + len(record[2])
            if batch and (len(batch) == limits.max_sequences or residues > limits.max_search_residues):
                batches.append([])
            batches[-1].append(record)
        results = []
        for batch in batches:
            body = {"sequences": [{"id": g, "sequence": q} for g, _, q in batch], "to": ["mouse"], "k": k}
            self.connection.request(
                "POST", "/homologs/sequence", body=json.dumps(body), headers={"content-type": "application/json"}
            )
            response = self.connection.getresponse()
            answer = response.read()
            assert response.status == 200, f"POST /homologs/sequence: {response.status} {answer[:300]!r}"
            results += json.loads(answer)["results"]
        return results

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atlas", type=Path, default=OUT / "service_atlas")
    parser.add_argument("--threads", type=int, default=2, help="MMseqs2 threads for align")
    parser.add_argument("--genes", type=int, help="score only the first N genes (by symbol)")
    parser.add_argument(
        "--compare", type=int, help="send only N evenly spaced genes through ov.query and the command (default: all)"
    )
    parser.add_argument("-k", type=int, default=5, help="candidates per query")
    parser.add_argument("--subprocess", type=int, default=20, help="genes also queried as real CLI processes")
    parser.add_argument("--sequences", type=int, default=50, help="mutated proteins sent as sequences")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs the shared data at {DATA}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"start: {uptime()}", flush=True)
    atlas = Atlas(args.atlas)
    build(atlas, args.threads)
    genes = scored_genes(atlas, args.genes)
    print(f"{len(genes):,} scorable human genes (Ensembl one2one, both genes in the files)", flush=True)

    # With embeddings, each ov.query and each command opens the embedded store (0.1-0.2 s), so on
    # that atlas `--compare N` sends an evenly spaced sample through those two paths; every gene
    # goes through the server, which holds the store open.
    compared = genes[:: max(1, len(genes) // args.compare)][: args.compare] if args.compare else genes
    times: dict[str, list[float]] = {"python": [], "cli": [], "http": [], "cli process": []}
    python_rows: dict[str, list[dict]] = {}
    chosen: set[str] = set()  # the evidence `auto` ranked by, as each answer says
    for gene_id, _, _ in compared:
        started = time.perf_counter()
        answer = ov.query(gene_id, "human", to=["mouse"], k=args.k, atlas=atlas)
        timed(times["python"], started)
        python_rows[gene_id] = [hit.model_dump() for hit in answer.hits]
        chosen.update(f"{t.evidence} (model {t.model})" if t.model else t.evidence for t in answer.targets)
    print(f"ov.query done ({len(compared):,} genes): {uptime()}", flush=True)

    runner = CliRunner()
    differ: dict[str, list[str]] = {"cli": [], "http": [], "cli process": []}
    base = ["--from", "human", "--to", "mouse", "-k", str(args.k), "--format", "json", "--atlas", str(atlas.root)]
    for gene_id, _, _ in compared:
        started = time.perf_counter()
        result = runner.invoke(cli_main, ["query", gene_id, *base])
        timed(times["cli"], started)
        assert result.exit_code == 0, f"orthovec query {gene_id}: {result.output}"
        if rows_of(json.loads(result.stdout)) != python_rows[gene_id]:
            differ["cli"].append(gene_id)
    for gene_id, _, _ in compared[:: max(1, len(compared) // args.subprocess)][: args.subprocess]:
        started = time.perf_counter()
        done = subprocess.run([ORTHOVEC, "query", gene_id, *base], capture_output=True, text=True, check=False)
        timed(times["cli process"], started)
        assert done.returncode == 0, f"orthovec query {gene_id}: {done.stderr}"
        if rows_of(json.loads(done.stdout)) != python_rows[gene_id]:
            differ["cli process"].append(gene_id)
    print(f"CLI done: {uptime()}", flush=True)

    records = mutated_proteins(atlas, genes, args.sequences)
    fasta = OUT / "query_agreement_mutated.fasta"
    fasta.write_text("".join(f">{gene_id}\n{sequence}\n" for gene_id, _, sequence in records))
    started = time.perf_counter()
    done = subprocess.run(
        [ORTHOVEC, "query", "--fasta", str(fasta), *base[2:]],  # base without --from
        capture_output=True,
        text=True,
        check=False,
    )
    fasta_seconds = time.perf_counter() - started
    assert done.returncode == 0, f"orthovec query --fasta: {done.stderr}"
    cli_sequence_rows: dict[str, list[dict]] = {gene_id: [] for gene_id, _, _ in records}
    for row in json.loads(done.stdout):
        cli_sequence_rows[row["query"]].append({key: row[key] for key in FIELDS})

    server = Server(atlas, free_port(args.port))
    http_rows: dict[str, list[dict]] = {}
    try:
        for gene_id, _, _ in genes:
            started = time.perf_counter()
            http_rows[gene_id] = server.homologs(gene_id, args.k)["hits"]
            timed(times["http"], started)
            if gene_id in python_rows and http_rows[gene_id] != python_rows[gene_id]:
                differ["http"].append(gene_id)
        started = time.perf_counter()
        http_sequences = server.sequences(records, args.k)
        http_sequence_seconds = time.perf_counter() - started
    finally:
        server.stop()
    http_sequence_rows = {result["id"]: result["hits"] for result in http_sequences}
    sequence_agree = sum(
        1 for gene_id, b, _ in records if (cli_sequence_rows[gene_id] or [{}])[0].get("gene_symbol", "").upper() == b
    )
    sequence_same = sum(1 for gene_id, _, _ in records if cli_sequence_rows[gene_id] == http_sequence_rows[gene_id])

    print(f"atlas: {atlas.root} (human x mouse, aligned, mapped); default evidence auto ranked by: {sorted(chosen)}")
    for label, rows in (("GET /homologs, every gene", http_rows), ("ov.query", python_rows)):
        scored = [(gene_id, b) for gene_id, _, b in genes if gene_id in rows]
        agree = sum(1 for gene_id, b in scored if (rows[gene_id] or [{}])[0].get("gene_symbol", "").upper() == b)
        no_hit = sum(1 for gene_id, _ in scored if not rows[gene_id])
        wrong = [(gene_id, b, rows[gene_id][0]["gene_symbol"]) for gene_id, b in scored if rows[gene_id]]
        wrong = [w for w in wrong if w[2].upper() != w[1]]
        print(
            f"{label}: top-1 agrees with Ensembl one2one for {agree:,} / {len(scored):,} = "
            f"{agree / len(scored):.4f}; no hit in mouse: {no_hit:,}; another top-1: {len(wrong):,} "
            f"(first five: {wrong[:5]})"
        )

    print("\n| path | genes | rows identical to ov.query | p50 per query |\n|---|---|---|---|")
    print(f"| ov.query | {len(compared):,} | (reference) | {1e3 * statistics.median(times['python']):.1f} ms |")
    for path in ("cli", "cli process", "http"):
        n = len(times[path]) if path != "http" else len(python_rows)
        label = {"cli": "orthovec query (in process)", "cli process": "orthovec query (process)"}.get(
            path, "GET /homologs (orthovec serve)"
        )
        print(f"| {label} | {n:,} | {n - len(differ[path]):,} | {1e3 * statistics.median(times[path]):.1f} ms |")
        if differ[path]:
            print(f"  differing ({path}): {differ[path][:10]}")
    print(
        f"\n{len(records)} human proteins with 10% of positions changed, --to mouse (rank-1 evidence: "
        f"{sorted({rows[0]['evidence'] for rows in cli_sequence_rows.values() if rows})}): "
        f"rank-1 is the Ensembl partner for {sequence_agree} / {len(records)}; rows identical between "
        f"`orthovec query --fasta` ({fasta_seconds:.1f} s, one process) and POST /homologs/sequence "
        f"({http_sequence_seconds:.1f} s, requests of at most 32): {sequence_same} / {len(records)}"
    )
    print(f"\nend: {uptime()}")
    if any(differ.values()) or sequence_same != len(records):
        sys.exit(1)


if __name__ == "__main__":
    main()
