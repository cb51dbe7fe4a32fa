"""Species made from one real proteome by planted divergence, for builds of many species.

Species k keeps the first `records` proteins of the source with a share `k * step` of each one's
residues substituted (seeded), so every pair of species has true one-to-one orthologs (the same
gene, whatever its name) at a known distance, as real species further and further apart would.
Used by the SLURM test and by `benchmarks/build_scaling.py`; `mutated` makes one such protein for
the sequence-search tests and benchmarks.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def diverged_proteomes(
    source: Path, names: Sequence[str], out: Path, *, records: int, step: float = 0.05, seed: int = 0
) -> dict[str, Path]:
    """One FASTA per name under `out` (species k: `k * step` of the residues substituted); name -> path."""
    opener = gzip.open if source.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(source, "rt") as handle:
        proteins = [record for _, record in zip(range(records), SimpleFastaParser(handle), strict=False)]
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for k, name in enumerate(names):
        lines = []
        for header, sequence in proteins:
            residues = list(sequence)
            for position in rng.sample(range(len(residues)), round(k * step * len(residues))):
                residues[position] = rng.choice(AMINO_ACIDS.replace(residues[position], ""))
            lines.append(f">{header}\n{''.join(residues)}\n")
        paths[name] = out / f"{name}.fa"
        paths[name].write_text("".join(lines))
    return paths


def mutated(sequence: str, share: float, seed: int = 7) -> str:
    """`sequence` with `share` of its positions (never the first) changed to another amino acid."""
    rng = random.Random(seed)
    residues = list(sequence)
    for position in rng.sample(range(1, len(residues)), round(share * len(residues))):
        residues[position] = rng.choice(AMINO_ACIDS.replace(residues[position], ""))
    return "".join(residues)
