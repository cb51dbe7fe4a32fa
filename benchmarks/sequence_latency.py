"""Latency of one protein sequence searched against a whole proteome, with no weights (issue 18).

    python benchmarks/sequence_latency.py [--atlas benchmarks/out/service_atlas] [--species human]
                                          [--length 400] [--warm 20] [--cold 5] [--port 8766]

The query is a real protein of `--length` residues from the species' proteome, with 10% of its
positions changed (seeded), so it is a new sequence close to a known gene. The atlas is the one
`benchmarks/query_agreement.py` builds (`index --no-embed`, search databases and k-mer indexes
kept in the atlas). Measured in the same run:
- warm server: `POST /homologs/sequence` to a running `orthovec serve` (no weights, so MMseqs2
  alone), `--warm` requests after one untimed first request; p50 and p90 (target p50 < 1 s);
- cold command: `orthovec query --sequence SEQ --to SPECIES --format json` as a new process each
  time, `--cold` runs after one untimed first run (which builds the species' k-mer index if the
  atlas has none yet; its time is printed); p50 and max (target < 3 s);
- baseline: MMseqs2's own `easy-search` of the same query against the species' FASTA file (the
  same binary, which builds its target database and k-mer table on every call), `--cold` runs.
Each path must find the protein the query was made from as its rank-1 gene. Prints machine and load.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from align_quality import proteome  # benchmarks/align_quality.py
from Bio.SeqIO.FastaIO import SimpleFastaParser
from query_agreement import ORTHOVEC, OUT, Server, build, free_port, mutated, uptime

from orthovec.lookup.homology.mmseqs import mmseqs_binary
from orthovec.schemas.atlas import Atlas


def query_protein(species: str, length: int) -> tuple[str, str]:
    """(symbol, sequence) of the first protein of the proteome with exactly `length` residues."""
    with gzip.open(proteome(species), "rt") as handle:
        for header, sequence in SimpleFastaParser(handle):
            if len(sequence) == length and " GN=" in header and "X" not in sequence:
                return header.split(" GN=")[1].split()[0], sequence
    sys.exit(f"no protein of {length} residues in {proteome(species)}")


def seconds(samples: list[float], at: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(at * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atlas", type=Path, default=OUT / "service_atlas")
    parser.add_argument("--species", default="human")
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"start: {uptime()}", flush=True)
    atlas = Atlas(args.atlas)
    build(atlas, threads=2)
    symbol, original = query_protein(args.species, args.length)
    query = mutated(original, 0.10)
    print(f"query: {symbol} ({len(query)} residues, 10% of positions changed) against {args.species}", flush=True)

    def first_symbol(hits: list[dict]) -> str:
        return str(hits[0]["gene_symbol"]) if hits else "(none)"

    # Cold command: a new process each time, as a user at a shell runs it.
    command = [ORTHOVEC, "query", "--sequence", query, "--to", args.species, "--format", "json"]
    command += ["--atlas", str(atlas.root)]
    index = next((atlas.root / "species" / args.species / "mmseqs").glob("*/*.idx"), None)
    cold: list[float] = []
    for attempt in range(args.cold + 1):
        started = time.perf_counter()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
        )
        if attempt:
            cold.append(time.perf_counter() - started)
        else:  # untimed: the first search of a species builds its k-mer index (once, kept in the atlas)
            first = time.perf_counter() - started
            print(f"first command ({'index there' if index else 'built the k-mer index'}): {first:.1f} s", flush=True)
        assert done.returncode == 0, done.stderr
        assert first_symbol(json.loads(done.stdout)) == symbol, done.stdout[:500]

    # Baseline: MMseqs2's easy-search of the same query against the FASTA file, same binary.
    baseline: list[float] = []
    with tempfile.TemporaryDirectory(prefix="latency-") as scratch:
        work = Path(scratch)
        (work / "query.fasta").write_text(f">query\n{query}\n")
        for run in range(args.cold):
            started = time.perf_counter()
            subprocess.run(
                [
                    str(mmseqs_binary()),
                    "easy-search",
                    str(work / "query.fasta"),
                    str(proteome(args.species)),
                    str(work / f"hits{run}.m8"),
                    str(work / f"tmp{run}"),
                    "--threads",
                    str(os.cpu_count() or 1),
                ],
                capture_output=True,
                check=True,
            )
            baseline.append(time.perf_counter() - started)
        best = (work / "hits0.m8").read_text().split("\n", 1)[0].split("\t")[1]
        print(f"easy-search rank-1 protein: {best}", flush=True)

    # Warm server: one untimed request first (opens the index, fills the page cache), then the timed ones.
    server = Server(atlas, free_port(args.port))
    warm: list[float] = []
    body = json.dumps({"sequences": [{"id": "query", "sequence": query}], "to": [args.species], "k": 10})
    try:
        for attempt in range(args.warm + 1):
            started = time.perf_counter()
            server.connection.request(
                "POST", "/homologs/sequence", body=body, headers={"content-type": "application/json"}
            )
            response = server.connection.getresponse()
            answer = response.read()
            if attempt:
                warm.append(time.perf_counter() - started)
            assert response.status == 200, answer[:500]
            (result,) = json.loads(answer)["results"]
            assert first_symbol(result["hits"]) == symbol, result["hits"][:2]
    finally:
        server.stop()

    print(
        f"\n{args.length}-residue sequence against {args.species}, no weights (MMseqs2 alone); "
        f"rank-1 = {symbol} on every path"
    )
    print("| path | runs | p50 | p90 / max | vs easy-search p50 |\n|---|---|---|---|---|")
    base = statistics.median(baseline)
    for label, samples, high in (
        ("warm server, POST /homologs/sequence", warm, seconds(warm, 0.9)),
        ("cold `orthovec query --sequence` (new process)", cold, max(cold)),
        ("baseline: `mmseqs easy-search` on the FASTA", baseline, max(baseline)),
    ):
        p50 = statistics.median(samples)
        print(f"| {label} | {len(samples)} | {p50:.2f} s | {high:.2f} s | {base / p50:.1f}x |")
    print(f"\nend: {uptime()}")


if __name__ == "__main__":
    main()
