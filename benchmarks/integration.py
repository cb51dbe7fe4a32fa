"""Gene mapping × features × correction on Baron pancreas, human + mouse: the docs' integration table.

    OMP_NUM_THREADS=1 python benchmarks/integration.py --work benchmarks/out/integration \
        --atlas benchmarks/out/atlas [--rows ensembl_one2one/one2one/harmony,...]

One thread on a shared machine: scVI's two PyTorch threads, fighting other sessions for the two
cores, train far slower than one (docs/integration.md gives the figures).

Mappings, all built here from ../shared/data:
- `symbols`: upper-cased symbols (the naive baseline);
- `ensembl_one2one`, `ensembl_groups` (every Ensembl homology row) from `scrna/baron_human2mouse_ensembl.csv.gz`;
- `esm2_15b_one2one`: the published ESM-2 15B one-to-one table (`reference/`);
- `orthovec_alignment`: `orthovec map human mouse --evidence alignment` on an atlas (`--atlas`) holding
  both Swiss-Prot proteomes aligned with `orthovec align` (MMseqs2): prepare it with `--prepare-atlas`.
Features: `one2one`, `groups` (homologs summed) and `graph` (SAMap-style projection through the
weighted many-to-many homology graph, BSR-weighted for the alignment mapping).
Corrections: `none`, `harmony` (species as the batch), `harmony+donor` (donors too, as further
batch variables of the same Harmony run), and scVI/scANVI trained as scIB and scvi-tools train them (2 layers,
30 latent dimensions, scvi-tools' epoch heuristic with early stopping on the validation ELBO):
`scvi` (species as batch), `scvi+donor` (donor as a categorical covariate too), `scanvi` (human
labels only, so transfer to mouse is a prediction) and `scanvi_both` (both species' labels: transfer
is no longer a prediction, it shows what full supervision buys). A `scanvi` run also yields the
`scvi` row of the same scVI model (its latent is kept), so each setting trains once.
Every row's metrics go to WORK/integration_results.json, training curves to WORK/curves/; the script
prints the markdown table of the docs with the machine and load (`uptime`) it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, cast

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LABEL = "cell_ontology_class"
LABELS = {
    "symbols": "upper-cased symbols",
    "ensembl_one2one": "Ensembl one2one",
    "ensembl_groups": "Ensembl homology rows",
    "esm2_15b_one2one": "published ESM-2 15B one-to-one",
    "orthovec_alignment": "orthovec alignment (MMseqs2, BSR)",
}
#: mapping/features/correction, in the order they run: the cheap rows first, then one scVI training per
#: line, most telling first (the scvi row of a mapping comes from the scanvi run beside it).
ROWS = (
    "symbols/one2one/none",
    "symbols/one2one/harmony",
    "ensembl_one2one/one2one/none",
    "ensembl_one2one/one2one/harmony",
    "ensembl_one2one/one2one/harmony+donor",
    "ensembl_groups/groups/harmony",
    "esm2_15b_one2one/one2one/harmony",
    "orthovec_alignment/one2one/none",
    "orthovec_alignment/one2one/harmony",
    "orthovec_alignment/one2one/harmony+donor",
    "orthovec_alignment/groups/none",
    "orthovec_alignment/groups/harmony",
    "orthovec_alignment/groups/harmony+donor",
    "orthovec_alignment/graph/none",
    "orthovec_alignment/graph/harmony",
    "orthovec_alignment/graph/harmony+donor",
    "orthovec_alignment/one2one/scvi",
    "orthovec_alignment/one2one/scanvi",
    "orthovec_alignment/graph/scvi",
    "orthovec_alignment/graph/scanvi",
    "orthovec_alignment/one2one/scvi+donor",
    "orthovec_alignment/one2one/scanvi_both",
    "orthovec_alignment/groups/scvi",
    "orthovec_alignment/groups/scanvi",
    "ensembl_one2one/one2one/scvi",
    "ensembl_one2one/one2one/scanvi",
)


def prepare_atlas(atlas: Path) -> None:
    """Both Swiss-Prot proteomes' PROTEINS tables (as `orthovec index` reads them; no embedding model)
    aligned by MMseqs2 (`orthovec align`), one thread."""
    from orthovec.indexer.proteome import read_proteome
    from orthovec.lookup.homology.align import align_species
    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import PROTEINS, write_table

    held = Atlas(atlas)
    for species, name in (("human", "human_sprot2014.fasta.gz"), ("mouse", "mouse_sprot2014.fasta.gz")):
        if not held.proteins(species).is_file():
            proteins, _ = read_proteome(DATA / "proteomes" / name, species)
            write_table(proteins, held.proteins(species), PROTEINS, {"fasta": name})
    align_species(held, "human", "mouse", threads=1, progress=lambda message: print(message, flush=True))


def build_mapping(name: str, work: Path, atlas: Path | None) -> Path | str:
    """The mapping file of one row (written once into WORK), or 'symbols'."""
    from orthovec.lookup.homology.imported import import_homology
    from orthovec.schemas.tables import MAPPING, write_table

    if name == "symbols":
        return "symbols"
    path = work / f"{name}.parquet"
    if path.is_file():
        return path
    if name == "orthovec_alignment":
        if atlas is None:
            raise SystemExit(f"{name} needs --atlas with human and mouse aligned (see --prepare-atlas).")
        from orthovec.lookup.homology.mapping import MappingParams, map_species
        from orthovec.schemas.atlas import Atlas

        map_species(Atlas(atlas), ["human", "mouse"], None, MappingParams(evidence="alignment"), path)
        return path
    if name == "esm2_15b_one2one":
        published = DATA / "reference" / "seed_human_mouse_LM_O2O_esm2_15B.csv.gz"
        table = import_homology(published, "human", "mouse", "pairs")
    else:
        strategy = {"ensembl_one2one": "one2one", "ensembl_groups": "all"}[name]
        baron = DATA / "scrna" / "baron_human2mouse_ensembl.csv.gz"
        table = import_homology(baron, "human", "mouse", "biomart", cast(Any, strategy))
    write_table(table, path, MAPPING, {"benchmark": "integration", "row": name})
    return path


def _config(correct: str) -> Any:
    from orthovec.integrate.process import ProcessConfig

    if correct in ("none", "harmony"):
        return ProcessConfig(correct=cast(Any, correct))
    if correct == "harmony+donor":
        return ProcessConfig(correct="harmony", covariates=("donor",))
    if correct == "scvi+donor":
        return ProcessConfig(correct="scvi", covariates=("donor",))
    if correct == "scanvi_both":
        return ProcessConfig(correct="scanvi", scanvi_labels_from=("human", "mouse"))
    return ProcessConfig(correct="scanvi")  # scanvi, and the scvi row beside it


def run_setting(mapping: Path | str, features: str, correct: str, curves: Path) -> dict[str, dict[str, Any]]:
    """The rows one training gives: {correction: result}; a scanvi run gives the scvi row of its scVI model."""
    import anndata as ad
    import scanpy as sc

    from orthovec.integrate.features import build_shared
    from orthovec.integrate.inputs import species_counts
    from orthovec.integrate.mappings import load_mappings
    from orthovec.integrate.metrics import integration_metrics
    from orthovec.integrate.plots import training_curves
    from orthovec.integrate.process import process

    started = time.perf_counter()
    data = {s: ad.read_h5ad(DATA / "scrna" / f"baron_{s}.h5ad") for s in ("human", "mouse")}
    counts = {s: species_counts(s, a) for s, a in data.items()}
    table, _, _ = load_mappings([mapping], {s: c.gene_names for s, c in counts.items()}, "human")
    shared, reports = build_shared(counts, table, cast(Any, features), "human")
    correction = process(shared, _config(correct), LABEL)
    genes = {
        "genes_kept": {r.species: r.genes_in_features for r in reports},
        "expressed_lost": {r.species: r.expressed_genes_lost for r in reports},
    }
    result = {correct: {**integration_metrics(shared, LABEL), "correction": correction, **genes}}
    seconds = time.perf_counter() - started
    if correct.startswith("harmony") or correct == "none":
        result[correct]["seconds"] = seconds
        return result
    curves.mkdir(parents=True, exist_ok=True)
    plot = training_curves(shared, curves)
    if plot is not None:
        plot.rename(curves / f"{Path(str(mapping)).stem}_{features}_{correct}.png")
    result[correct]["seconds"] = seconds
    if correct == "scanvi":
        shared.uns["orthovec"]["embedding"] = "X_scvi"  # the same scVI model, scored on its own
        sc.pp.neighbors(shared, use_rep="X_scvi", random_state=0)
        sc.tl.leiden(shared, random_state=0, flavor="igraph", n_iterations=2, directed=False)
        scvi_record = {k: v for k, v in correction.items() if not k.startswith("scanvi")} | {"method": "scvi"}
        result["scvi"] = {**integration_metrics(shared, LABEL), "correction": scvi_record, **genes}
        result["scvi"]["seconds"] = seconds - float(correction["scanvi"]["seconds"])  # type: ignore[index]
    return result


COLUMNS = (
    "cell-type ASW",
    "iLISI",
    "ARI",
    "NMI",
    "transfer h→m",
    "transfer m→h",
    "cross-species kNN",
    "ceiling",
    "of possible",
    "ALCS",
    "overall",
)


def _method(correct: str, result: dict[str, Any]) -> str:
    record = result["correction"]
    if correct.startswith("harmony") or correct == "none":
        return correct
    scvi = record["scvi"]
    trained = f"{scvi['epochs']}/{scvi['max_epochs']} ep.{' (early stop)' if scvi['stopped_early'] else ''}"
    if correct.startswith("scvi"):
        return f"{correct}, {trained}"
    scanvi = record["scanvi"]
    return f"{correct} ({record['scanvi_labels_from']} labels), scVI {trained} + {scanvi['epochs']} ep."


def row(mapping: str, features: str, correct: str, result: dict[str, Any]) -> str:
    transfer = result["label_transfer"]
    values = [result[k] for k in ("celltype_asw", "ilisi", "ari", "nmi")]
    values += [transfer["human->mouse"], transfer["mouse->human"]]
    values += [result["cross_species_neighbour_fraction"], result["cross_species_neighbour_ceiling"]]
    values += [result["mixing_of_possible"], result["alcs"], result["overall"]]
    lost = result["expressed_lost"]
    cells = [
        LABELS[mapping],
        features,
        _method(correct, result),
        f"{result['n_features']:,}",
        f"{lost['human']:,} / {lost['mouse']:,}",
        *(f"{v:.3f}" for v in values),
        f"{result['seconds']:.0f} s",
        result.get("load", "?"),
    ]
    return "| " + " | ".join(cells) + " |"


def per_type_table(results: dict[str, Any], keys: list[str]) -> list[str]:
    """Mixing reached per shared cell type (observed / expected cross-species neighbours), one column per row."""
    types = sorted({t for key in keys for t in results[key]["mixing_per_cell_type"]})
    lines = ["| cell type | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for cell_type in types:
        shown = [results[key]["mixing_per_cell_type"].get(cell_type, {}) for key in keys]
        lines.append(
            f"| {cell_type} ({shown[0].get('n_cells', 0)} cells) | "
            + " | ".join(f"{s['fraction_of_possible']:.2f}" if s else "-" for s in shown)
            + " |"
        )
    return lines


def _load() -> str:
    """The 1-minute load average now: each row says the load it ran under, not only the run's ends."""
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").is_file() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Folder for mapping files and results (not git).")
    parser.add_argument("--atlas", type=Path, help="Atlas with human + mouse aligned (orthovec rows).")
    parser.add_argument("--prepare-atlas", action="store_true", help="Register and align both proteomes first.")
    parser.add_argument("--rows", default=",".join(ROWS), help="mapping/features/correction, comma-separated.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.prepare_atlas:
        prepare_atlas(args.atlas)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; at start: {load}", flush=True)
    results_path = args.work / "integration_results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    header = ["gene mapping", "features", "correction", "n features", "expressed genes lost (h / m)", *COLUMNS]
    header += ["time", "load (1 min)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in args.rows.split(","):
        name, features, correct = key.split("/")
        if key not in results:
            mapping = build_mapping(name, args.work, args.atlas)
            trained = "scanvi" if correct == "scvi" else correct  # the scvi row comes from the scanvi run
            before = _load()
            for produced, result in run_setting(mapping, features, trained, args.work / "curves").items():
                results[f"{name}/{features}/{produced}"] = result | {"load": f"{before} -> {_load()}"}
            results_path.write_text(json.dumps(results, indent=1, default=str))
        lines.append(row(name, features, correct, results[key]))
        print(lines[-1], flush=True)
    print("\n".join(lines))
    shown = [k for k in args.rows.split(",") if k.startswith("ensembl_one2one") or "/harmony" in k or "graph" in k]
    print("\n".join(per_type_table(results, shown)))
    print(f"at end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
