"""Peak memory of `orthovec index` as the proteome grows: bounded by the batch, or by the proteome?

    python benchmarks/index_memory.py [--arch 8M] [--n 1000 4000 17459] [--slack-mb 128]

Indexes the first N proteins of ../shared/data/proteomes/human_sprot2014.fasta.gz (file order,
not a sample) with a random-weight checkpoint of the real architecture (memory does not depend on
weight values), each N in a fresh process on the CPU, into a fresh atlas. Reports residues,
seconds, residues/s, the process's peak RSS and its RSS after imports and model loading (the
floor), then the ratio of the largest N's peak to the smallest's: 1.0 means memory does not grow
with the proteome. `--slack-mb 0` trims freed memory after every batch; a huge value (`1e9`)
never trims, which is the baseline to compare against in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

from orthovec.embedding.architectures import RANDOM_ARCHITECTURES as ARCHITECTURES
from orthovec.embedding.model import architecture_name
from orthovec.embedding.random_weights import write_random_checkpoint

HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteomes" / "human_sprot2014.fasta.gz"
OUT = Path(__file__).resolve().parent / "out"


def write_subset(n: int, path: Path) -> int:
    """The first n human proteins as FASTA; returns their residues."""
    residues = 0
    with gzip.open(HUMAN, "rt") as handle, open(path, "w") as out:
        for i, (header, sequence) in enumerate(SimpleFastaParser(handle)):
            if i == n:
                break
            out.write(f">{header}\n{sequence}\n")
            residues += len(sequence)
    return residues


def index_once(fasta: Path, weights: Path, slack_bytes: int) -> tuple[float, float, float]:
    """In a fresh process: seconds, RSS after loading (MB), peak RSS (MB)."""
    from orthovec.embedding.model import load_model
    from orthovec.indexer import memory
    from orthovec.indexer.pipeline import IndexConfig
    from orthovec.indexing import index_proteome
    from orthovec.schemas.atlas import Atlas

    load_model(None, weights, "cpu")  # what the floor includes: torch, fair-esm, the model
    floor = memory.resident_bytes() / 2**20
    with tempfile.TemporaryDirectory() as atlas:
        config = IndexConfig(
            fasta=fasta,
            species="human",
            atlas=Atlas(Path(atlas)),
            weights=weights,
            device="cpu",
            memory_slack_bytes=slack_bytes,
        )
        start = time.perf_counter()
        index_proteome(config)
        seconds = time.perf_counter() - start
    return seconds, floor, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="8M", choices=list(ARCHITECTURES))
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000], help="proteome sizes (first N proteins)")
    parser.add_argument("--slack-mb", type=float, default=128, help="RSS growth that triggers a trim")
    args = parser.parse_args()
    if not HUMAN.is_file():
        sys.exit(f"needs {HUMAN}")
    layers, dim, _ = ARCHITECTURES[args.arch]
    weights = OUT / f"{architecture_name(layers, dim)}.pt"
    if not weights.is_file():
        write_random_checkpoint(weights, args.arch)

    context = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for n in sorted(args.n):
            fasta = Path(work) / f"human_{n}.fasta"
            residues = write_subset(n, fasta)
            with context.Pool(1) as pool:
                seconds, floor, peak = pool.apply(index_once, (fasta, weights, int(args.slack_mb * 2**20)))
            rows.append((n, residues, seconds, floor, peak))

    print(f"{weights.stem} on cpu, trim slack {args.slack_mb:g} MB; each N in a fresh process")
    print("| proteins | residues | seconds | residues/s | RSS after load MB | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, residues, seconds, floor, peak in rows:
        print(f"| {n:,} | {residues:,} | {seconds:.1f} | {residues / seconds:,.0f} | {floor:,.0f} | {peak:,.0f} |")
    (n0, r0, *_, p0), (n1, r1, *_, p1) = rows[0], rows[-1]
    print(f"peak RSS ratio {n1:,} / {n0:,} proteins: {p1 / p0:.2f} for {r1 / r0:.1f}x the residues")


if __name__ == "__main__":
    main()
