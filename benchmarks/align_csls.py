"""Hubness correction: `--metric csls` against cosine on human proteins and perturbed copies.

    nice -n 10 python benchmarks/align_csls.py --weights TINY.pt [--n 300] [--rates 0.1,0.3,0.5]

For each substitution rate, the first N human proteins and a copy with that share of residues
substituted (`benchmarks/perturbed_human.py`'s procedure) are indexed as two species with the
checkpoint, mapped with each metric, and the one-to-one calls scored (correct = same gene). With
a random-weight checkpoint this compares the metrics on what survives the real architecture and
pooling, not on what pretrained weights would give.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from perturbed_human import HUMAN, write_subset_and_mutant


def main() -> None:
    from orthovec.indexer.pipeline import IndexConfig
    from orthovec.indexing import index_proteome
    from orthovec.lookup.homology.evaluate import predicted_pairs
    from orthovec.lookup.homology.mapping import MappingParams, map_species
    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import MAPPING, read_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rates", default="0.1,0.3,0.5")
    args = parser.parse_args()
    print("| substitution | metric | greedy called | greedy correct | RBH | RBH correct | floor off: greedy correct |")
    print("|---|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            atlas = Atlas(Path(tmp) / "atlas")
            original, mutant = write_subset_and_mutant(HUMAN, args.n, rate, Path(tmp))
            for species, fasta in (("human", original), ("human_mut", mutant)):
                index_proteome(IndexConfig(fasta=fasta, species=species, atlas=atlas, weights=args.weights))
            for metric in ("cosine", "csls"):
                cells = []
                for floor in (0.01, float("inf")):
                    params = MappingParams(metric=metric, max_evalue=floor)  # type: ignore[arg-type]
                    summary = map_species(atlas, ["human", "human_mut"], params=params)[0]
                    mapping = read_table(Path(summary.path), MAPPING)
                    for pairs in ("greedy", "rbh") if floor < 1 else ("greedy",):
                        chosen, _ = predicted_pairs(mapping, pairs)
                        correct = int((chosen["gene_id_a"] == chosen["gene_id_b"]).sum())
                        cells += [f"{chosen.height:,}", f"{correct:,}"] if floor < 1 else [f"{correct:,}"]
                print(f"| {rate:.0%} | {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
