"""How mixed a species' own donors get, beside how mixed the species get: a yardstick for the
composition-aware mixing of the integration table (docs/integration.md).

    OMP_NUM_THREADS=1 python benchmarks/integration_donors.py \
        --mapping benchmarks/out/integration/orthovec_alignment.parquet

Donors of one species share all their biology, so the mixing a correction reaches between them is
about the most it can reach between batches that differ only technically. The score is the one
`metrics.json` reports (`composition_mixing`: observed over expected other-batch neighbours per
shared cell type, cell-weighted), computed with donors in place of species inside each species'
cells of the corrected embedding, for no correction, Harmony over species, and Harmony over species
and donors. Prints the machine's load (`uptime`) at start and end.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import anndata as ad

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scrna"
LABEL = "cell_ontology_class"


def main() -> None:
    from orthovec.integrate.features import build_shared
    from orthovec.integrate.inputs import species_counts
    from orthovec.integrate.mappings import load_mappings
    from orthovec.integrate.metrics import _neighbours, composition_mixing
    from orthovec.integrate.process import ProcessConfig, process

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mapping", type=Path, required=True, help="human/mouse MAPPING table (one2one features).")
    args = parser.parse_args()
    print(f"at start: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
    counts = {s: species_counts(s, ad.read_h5ad(DATA / f"baron_{s}.h5ad")) for s in ("human", "mouse")}
    table, _, _ = load_mappings([args.mapping], {s: c.gene_names for s, c in counts.items()}, "human")
    settings = {
        "none": ProcessConfig(correct="none"),
        "harmony": ProcessConfig(correct="harmony"),
        "harmony+donor": ProcessConfig(correct="harmony", covariates=("donor",)),
    }
    print("| correction | species (of possible) | human donors | mouse donors |\n|---|---|---|---|")
    for name, config in settings.items():
        shared, _ = build_shared(counts, table, "one2one", "human")
        record = process(shared, config, LABEL)
        x = shared.obsm[str(record["embedding"])]
        labels = shared.obs[LABEL].astype(str).to_numpy()
        species = shared.obs["species"].astype(str).to_numpy()
        mixing = [composition_mixing(_neighbours(x, 15).indices, species, labels)["mixing_of_possible"]]
        for one in ("human", "mouse"):
            cells = species == one
            donors = shared.obs["donor"].astype(str).to_numpy()[cells]
            mixing.append(
                composition_mixing(_neighbours(x[cells], 15).indices, donors, labels[cells])["mixing_of_possible"]
            )
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in mixing) + " |", flush=True)
    print(f"at end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
