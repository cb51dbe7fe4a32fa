"""Do perturbed copies of human proteins map back to themselves one-to-one?

    python benchmarks/perturbed_human.py --weights esm2_t6_8M_UR50D.pt [--n 3000] [--rate 0.10]

Takes the first N human proteins of ../shared/data/proteomes/human_sprot2014.fasta.gz (all with
--n 0), writes a copy in which `--rate` of each protein's residues are substituted by a different
standard amino acid (seeded), indexes both as two species with the given checkpoint, runs
`orthovec map` and scores the one-to-one pairs: a pair is correct when both sides are the same
gene. With a random-weight checkpoint this measures how much of the signal survives through the
real architecture, pooling and mapping code, not what pretrained weights would give.
"""

from __future__ import annotations

import argparse
import gzip
import random
import tempfile
import time
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteomes" / "human_sprot2014.fasta.gz"


def write_subset_and_mutant(source: Path, n: int, rate: float, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    original, mutant = out_dir / "human.fasta.gz", out_dir / "human_mut.fasta.gz"
    with gzip.open(source, "rt") as handle, gzip.open(original, "wt") as a, gzip.open(mutant, "wt") as b:
        for i, (header, sequence) in enumerate(SimpleFastaParser(handle)):
            if n and i >= n:
                break
            residues = list(sequence)
            for pos in rng.sample(range(len(residues)), round(rate * len(residues))):
                residues[pos] = rng.choice(AMINO_ACIDS.replace(residues[pos], ""))
            a.write(f">{header}\n{sequence}\n")
            b.write(f">{header}\n{''.join(residues)}\n")
    return original, mutant


def main() -> None:
    from orthovec.indexer.pipeline import IndexConfig
    from orthovec.indexing import index_proteome
    from orthovec.lookup.homology.evaluate import predicted_pairs
    from orthovec.lookup.homology.mapping import map_species
    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import MAPPING, read_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--n", type=int, default=3000, help="first N human proteins (0 = all 17,459)")
    parser.add_argument("--rate", type=float, default=0.10)
    parser.add_argument("--atlas", type=Path, help="keep the atlas here (default: a temporary directory)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        atlas = Atlas(args.atlas or Path(tmp) / "atlas")
        original, mutant = write_subset_and_mutant(HUMAN, args.n, args.rate, Path(tmp))
        for species, fasta in (("human", original), ("human_mut", mutant)):
            started = time.perf_counter()
            result = index_proteome(IndexConfig(fasta=fasta, species=species, atlas=atlas, weights=args.weights))
            seconds = time.perf_counter() - started
            rate = result.n_residues_embedded / max(result.embed_seconds, 1e-9)
            print(f"indexed {species}: {result.n_genes} genes in {seconds:.0f} s ({rate:,.0f} residues/s)")
        summary = map_species(atlas, ["human", "human_mut"])[0]
        mapping = read_table(Path(summary.path), MAPPING)
    # The truth is identity: every gene's perturbed copy keeps its gene ID.
    for pairs in ("greedy", "optimal", "rbh"):
        chosen, _ = predicted_pairs(mapping, pairs)
        correct = int((chosen["gene_id_a"] == chosen["gene_id_b"]).sum())
        print(
            f"{pairs:>8}: {chosen.height:,} pairs, {correct:,} correct, "
            f"precision {correct / chosen.height:.4f}, recall {correct / summary.genes_a:.4f}"
        )
    print(f"map: {summary.seconds:.2f} s for {summary.genes_a:,} x {summary.genes_b:,} genes")


if __name__ == "__main__":
    main()
