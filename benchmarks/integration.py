"""Gene-mapping strategy × batch correction on Baron pancreas, human + mouse: the README's integration table.

    nice -n 10 python benchmarks/integration.py --work /tmp/integ [--atlas /tmp/integ/atlas] \
        [--corrections none,harmony,scvi,scanvi] [--mappings symbols,ensembl_one2one,...]

Rows are the literature's gene mappings, all built here from ../shared/data:
- `symbols`: upper-cased symbols (the naive baseline);
- `ensembl_one2one`, `ensembl_groups` (every Ensembl homology row, many-to-many groups summed),
  `ensembl_hc_greedy` (greedy one-to-one by orthology confidence, then identity), from
  `scrna/baron_human2mouse_ensembl.csv.gz`;
- `esm2_15b_one2one`: the published ESM-2 15B one-to-one table (`reference/`);
- `ensembl_15b_fused`: Ensembl (`reference/seed_human_mouse_ENS_M2M.tsv.gz`, which has % identity)
  fused with the 15B scores (`import-homology --strategy fused`);
- `orthovec_alignment`, `orthovec_fused`: `orthovec map human mouse --evidence alignment|fused` on an
  atlas (`--atlas`) where both Swiss-Prot proteomes were indexed with a random-weight checkpoint and
  aligned with `orthovec align` (MMseqs2). Their embedding half measures no biology; the alignment does.
Each row runs `orthovec.integrate` (shared features, normalisation, HVGs, PCA, correction, neighbours,
metrics) on the same data; scANVI sees the human labels only. Prints a markdown table and writes
every run's metrics to WORK/integration_results.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, cast

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAPPINGS = (
    "symbols",
    "ensembl_one2one",
    "ensembl_groups",
    "ensembl_hc_greedy",
    "esm2_15b_one2one",
    "ensembl_15b_fused",
    "orthovec_alignment",
    "orthovec_fused",
)
LABELS = {
    "symbols": "upper-cased symbols",
    "ensembl_one2one": "Ensembl one2one",
    "ensembl_groups": "Ensembl many-to-many groups",
    "ensembl_hc_greedy": "Ensembl high-confidence greedy",
    "esm2_15b_one2one": "published ESM-2 15B one-to-one",
    "ensembl_15b_fused": "Ensembl + 15B fused",
    "orthovec_alignment": "orthovec alignment (MMseqs2)",
    "orthovec_fused": "orthovec fused (alignment + random-weight embedding)",
}


def build_mapping(name: str, work: Path, atlas: Path | None) -> Path | str:
    """The mapping file of one row (written once into WORK), or 'symbols'."""
    from orthovec.lookup.homology.imported import import_homology
    from orthovec.schemas.tables import MAPPING, write_table

    if name == "symbols":
        return "symbols"
    path = work / f"{name}.parquet"
    if path.is_file():
        return path
    baron = DATA / "scrna" / "baron_human2mouse_ensembl.csv.gz"
    published = DATA / "reference" / "seed_human_mouse_LM_O2O_esm2_15B.csv.gz"
    if name.startswith("orthovec_"):
        if atlas is None:
            raise SystemExit(f"{name} needs --atlas with human and mouse indexed and aligned (see the docstring).")
        from orthovec.lookup.homology.mapping import MappingParams, map_species
        from orthovec.schemas.atlas import Atlas

        evidence = name.removeprefix("orthovec_")
        map_species(Atlas(atlas), ["human", "mouse"], None, MappingParams(evidence=cast(Any, evidence)), path)
        return path
    if name == "esm2_15b_one2one":
        table = import_homology(published, "human", "mouse", "pairs")
    elif name == "ensembl_15b_fused":
        embedding = build_mapping("esm2_15b_one2one", work, atlas)
        seed = DATA / "reference" / "seed_human_mouse_ENS_M2M.tsv.gz"
        table = import_homology(seed, "human", "mouse", "biomart", "fused", Path(embedding))
    else:
        strategy = {"ensembl_one2one": "one2one", "ensembl_groups": "all", "ensembl_hc_greedy": "hc-greedy"}[name]
        table = import_homology(baron, "human", "mouse", "biomart", cast(Any, strategy))
    write_table(table, path, MAPPING, {"benchmark": "integration", "row": name})
    return path


def run_one(mapping: Path | str, features: str, correct: str, max_epochs: int, scanvi_epochs: int) -> dict[str, Any]:
    import anndata as ad

    from orthovec.integrate.features import build_shared
    from orthovec.integrate.inputs import species_counts
    from orthovec.integrate.mappings import load_mappings
    from orthovec.integrate.metrics import integration_metrics
    from orthovec.integrate.process import ProcessConfig, process

    started = time.perf_counter()
    data = {s: ad.read_h5ad(DATA / "scrna" / f"baron_{s}.h5ad") for s in ("human", "mouse")}
    counts = {s: species_counts(s, a) for s, a in data.items()}
    table, _ = load_mappings([mapping], {s: c.gene_names for s, c in counts.items()}, "human")
    shared, reports = build_shared(counts, table, cast(Any, features), "human")
    config = ProcessConfig(correct=cast(Any, correct), max_epochs=max_epochs, scanvi_epochs=scanvi_epochs)
    correction = process(shared, config, "cell_ontology_class")
    metrics = integration_metrics(shared, "cell_ontology_class")
    return {
        **metrics,
        "correction": correction,
        "genes_kept": {r.species: r.genes_in_features for r in reports},
        "expressed_lost": {r.species: r.expressed_genes_lost for r in reports},
        "seconds": time.perf_counter() - started,
    }


COLUMNS = (
    "cell-type ASW",
    "species ASW",
    "iLISI",
    "cLISI",
    "ARI",
    "NMI",
    "graph conn.",
    "transfer h→m",
    "transfer m→h",
    "cross-species kNN",
    "ALCS",
    "overall",
)


def row(name: str, correct: str, result: dict[str, Any]) -> str:
    transfer = result["label_transfer"]
    values = [
        result[k] for k in ("celltype_asw", "species_asw", "ilisi", "clisi", "ari", "nmi", "graph_connectivity")
    ] + [transfer["human->mouse"], transfer["mouse->human"]]
    values += [result["cross_species_neighbour_fraction"], result["alcs"], result["overall"]]
    lost = result["expressed_lost"]
    epochs = result["correction"].get("scvi_epochs")
    scanvi = result["correction"].get("scanvi_epochs"), result["correction"].get("scanvi_labels_from")
    method = correct + (f" ({epochs}+{scanvi[0]} ep., {scanvi[1]} labels only)" if correct == "scanvi" else "")
    method = f"scvi ({epochs} ep.)" if correct == "scvi" else method
    cells = [
        LABELS[name],
        method,
        f"{result['n_features']:,}",
        f"{lost['human']:,} / {lost['mouse']:,}",
        *(f"{v:.3f}" for v in values),
        f"{result['seconds']:.0f} s",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Folder for mapping files and results (not git).")
    parser.add_argument("--atlas", type=Path, help="Atlas with human + mouse indexed and aligned (orthovec rows).")
    parser.add_argument("--mappings", default=",".join(MAPPINGS))
    parser.add_argument("--corrections", default="none,harmony,scvi,scanvi")
    parser.add_argument("--max-epochs", type=int, default=100, help="scVI epochs at most (early stopping).")
    parser.add_argument("--scanvi-epochs", type=int, default=20)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "integration_results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    header = ["gene mapping", "correction", "features", "expressed genes lost (h / m)", *COLUMNS, "time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in args.mappings.split(","):
        mapping = build_mapping(name, args.work, args.atlas)
        features = "groups" if name == "ensembl_groups" else "one2one"
        for correct in args.corrections.split(","):
            key = f"{name}/{correct}"
            if key not in results:
                results[key] = run_one(mapping, features, correct, args.max_epochs, args.scanvi_epochs)
                results_path.write_text(json.dumps(results, indent=1, default=str))
            lines.append(row(name, correct, results[key]))
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
