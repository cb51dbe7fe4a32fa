"""Alignment evidence on real proteomes: speed of `orthovec align` and mapping quality against references.

    nice -n 10 python benchmarks/align_quality.py --atlas /tmp/align-atlas --proteins-only --modes [--threads 2]

`--modes [--settle 0.3,0.5]` (issue 20 item 1): the adaptive search (`orthovec align`, the
default) beside the exhaustive one at MMseqs2's default sensitivity (`orthovec align
--sensitivity 5.7`) and the former default (that search with each direction's candidates aligned
on their own, the baseline of the speed-ups), and the adaptive search at each other
`settle_bsr` given, each from a fresh copy of the atlas's proteins (so each pays for its own
per-species databases), in the same run: wall time of human × mouse and human × X. tropicalis,
the speed-up, greedy one-to-one precision / recall against Ensembl one2one (human × mouse) and
DIOPT ≥ 5 (human × frog) of the alignment-only map each gives, and the search each table's
provenance says ran.

The atlas holds `human`, `mouse` and `xenopus_tropicalis` from ../shared/data/proteomes/ (indexed
with `orthovec index ... --weights TINY.pt`, or, with `--proteins-only`, just their proteins so
only alignment evidence is measured). Keep it outside git.

Speed: `orthovec align human mouse` (its own process; wall time, peak RSS of the process tree
from GNU time, and the share of each MMseqs2 step from its progress lines) beside MMseqs2's
default `easy-search` run both ways on the same FASTA files, in the same run.

Quality, on the genes present in both proteome files (case-insensitive symbols):
- human × mouse against Ensembl one2one (`orthologs/human_mouse_ensembl_biomart.csv.gz`);
- human × X. tropicalis against DIOPT pairs with at least 5 of 7 tools (Entrez gene IDs);
each as precision / recall / F1 of RBH, greedy and optimal one-to-one for alignment-only,
embedding-only and fused maps (the embedding uses the atlas's random-weight model: it measures
the plumbing, no biology), with the published ESM-2 15B one-to-one table on the same genes. The
many-to-many homology graph is scored against every reference pair (`evaluate`'s graph scores).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from orthovec.lookup.homology.evaluate import Evaluation

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PROTEOMES = {
    "human": "human_sprot2014",
    "mouse": "mouse_sprot2014",
    "xenopus_tropicalis": "xenopus_tropicalis_sprot2014",
}


def proteome(species: str) -> Path:
    return DATA / "proteomes" / f"{PROTEOMES[species]}.fasta.gz"


def ensure_proteins(atlas_root: Path) -> None:
    """Write PROTEINS tables for species the atlas lacks (alignment needs nothing else)."""
    from orthovec.indexer.proteome import read_proteome
    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import PROTEINS, write_table

    atlas = Atlas(atlas_root)
    for species in PROTEOMES:
        if not atlas.proteins(species).is_file():
            proteins, _ = read_proteome(proteome(species), species)
            write_table(proteins, atlas.proteins(species), PROTEINS, {"source": str(proteome(species))})


def write_random_vectors(atlas_root: Path, dim: int) -> None:
    """Gaussian gene vectors under model name `random<dim>`: a stand-in for random-weight embeddings
    when indexing the proteomes is out of reach; like them, it measures the plumbing, no biology."""
    import numpy as np

    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import GENES, genes_table, write_table

    atlas = Atlas(atlas_root)
    rng = np.random.default_rng(0)
    for species in PROTEOMES:
        genes = (
            pl.read_parquet(atlas.proteins(species), columns=["gene_id", "gene_symbol"])
            .unique("gene_id")
            .sort("gene_id")
        )
        vectors = rng.normal(size=(genes.height, dim)).astype(np.float32)
        table = genes_table(species, genes["gene_id"].to_list(), vectors, gene_symbols=genes["gene_symbol"].to_list())
        write_table(table, atlas.genes(species, f"random{dim}"), GENES, {"model": f"random{dim}"})


def timed(command: list[str], label: str) -> tuple[float, float, list[tuple[float, str]]]:
    """(wall seconds, peak RSS GB of the process tree's largest process, timestamped stderr lines)."""
    with tempfile.NamedTemporaryFile(suffix=".time") as report:
        started = time.perf_counter()
        process = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stderr]
        if process.wait() != 0:
            sys.exit(f"{label} failed:\n" + "\n".join(line for _, line in lines[-20:]))
        wall = time.perf_counter() - started
        peak_kb = float(Path(report.name).read_text().strip().splitlines()[-1])
    return wall, peak_kb / 2**20, lines


def speed(atlas_root: Path, threads: int, proteins: int | None) -> None:
    """`orthovec align human mouse` vs `mmseqs easy-search` both ways on the same sequences.

    With `proteins`, both run on the first N proteins of each species (a sub-atlas beside the
    atlas), which keeps the comparison affordable on a busy machine; the ratio is what counts.
    """
    from orthovec.lookup.homology.align import mmseqs_binary
    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import PROTEINS, read_table, write_table

    source = Atlas(atlas_root)
    with tempfile.TemporaryDirectory(dir=atlas_root, prefix=".speed-") as scratch:
        atlas = Atlas(Path(scratch) / "atlas")
        fasta = {}
        for species in ("human", "mouse"):
            table = read_table(source.proteins(species), PROTEINS)
            table = table.slice(0, proteins) if proteins else table
            write_table(table, atlas.proteins(species), PROTEINS, {})
            fasta[species] = Path(scratch) / f"{species}.fasta"
            fasta[species].write_text(
                "".join(
                    f">{pid}\n{seq}\n"
                    for pid, seq in zip(table["protein_id"].to_pylist(), table["sequence"].to_pylist(), strict=True)
                )
            )
        command = [sys.executable, "-m", "orthovec.cli", "align", "human", "mouse", "--atlas", str(atlas.root)]
        wall, peak, lines = timed([*command, "--threads", str(threads)], "orthovec align")
        binary = str(mmseqs_binary())
        baseline_wall, baseline_peak = 0.0, 0.0
        for query, target in (("human", "mouse"), ("mouse", "human")):
            search = [binary, "easy-search", str(fasta[query]), str(fasta[target]), f"{scratch}/{query}.m8"]
            w, p, _ = timed([*search, f"{scratch}/tmp", "--threads", str(threads), "-v", "1"], "easy-search")
            baseline_wall, baseline_peak = baseline_wall + w, max(baseline_peak, p)
    steps: dict[str, float] = {}
    marks = [(t, line) for t, line in lines if line.startswith("[")] + [(wall, "end")]
    for (t0, line), (t1, _) in itertools.pairwise(marks):
        kind = (
            "candidates (prefilter)"
            if "candidates" in line
            else "exact scoring (align)"
            if "Smith" in line
            else "other"
        )
        kind = "self-scores" if "self-scores" in line else kind
        steps[kind] = steps.get(kind, 0.0) + t1 - t0
    steps["startup"] = marks[0][0]
    sizes = f"first {proteins:,} proteins of each" if proteins else "whole proteomes"
    print(f"\n### Speed: human × mouse ({sizes}), both directions, {threads} threads\n")
    print("| run | wall s | peak RSS GB |\n|---|---|---|")
    print(f"| `orthovec align human mouse` | {wall:.1f} | {peak:.2f} |")
    print(f"| MMseqs2 `easy-search` ×2 (default settings) | {baseline_wall:.1f} | {baseline_peak:.2f} |")
    print(f"\nratio orthovec / easy-search: {wall / baseline_wall:.2f}")
    print("share of `orthovec align` time: " + ", ".join(f"{k} {v / wall:.0%}" for k, v in steps.items()))


# One adaptive run at another `settle_bsr` than the default: the same `align_species`, with the
# threshold swapped in; the table's provenance records the threshold that ran.
SETTLE_CHILD = """
import dataclasses, sys
from pathlib import Path
from orthovec.lookup.homology import align
from orthovec.schemas.atlas import Atlas
atlas, species_b, threads, settle = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
align.align_params = lambda sensitivity=None: dataclasses.replace(align.AlignParams(), settle_bsr=settle)
align.align_species(Atlas(atlas), "human", species_b, threads=threads)
"""


# The former default, for the baseline: the exhaustive search with each direction's candidates
# aligned on their own (before B→A reused A→B's alignments of the pairs both propose).
SEPARATE_CHILD = """
import sys
from pathlib import Path
from orthovec.lookup.homology import align
from orthovec.schemas.atlas import Atlas
atlas, species_b, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
align._Aligned.transposed = lambda self: align._Aligned.nothing()
align.align_species(Atlas(atlas), "human", species_b, threads=threads, sensitivity=5.7)
"""
FORMER = "exhaustive, each direction aligned separately (-s 5.7; the former default)"


def modes(atlas_root: Path, threads: int, settles: list[float]) -> None:
    """Exhaustive vs adaptive `orthovec align` (the default, and each other `settle_bsr` asked
    for), each on its own fresh atlas, timed and scored; the provenance of every table is read
    back to show the search that ran."""
    import shutil

    from orthovec.lookup.homology.align import AlignParams
    from orthovec.lookup.homology.evaluate import evaluate
    from orthovec.lookup.homology.mapping import MappingParams, map_species
    from orthovec.schemas.atlas import Atlas
    from orthovec.schemas.tables import read_provenance

    source = Atlas(atlas_root)
    truths = {"mouse": ensembl_truth(atlas_root).to_arrow(), "xenopus_tropicalis": diopt_truth(atlas_root).to_arrow()}
    results: dict[str, dict[str, float | str]] = {}
    default = AlignParams().settle_bsr
    cli = [sys.executable, "-m", "orthovec.cli", "align", "human"]
    runs: dict[str, list[str] | float | str] = {FORMER: SEPARATE_CHILD, "exhaustive (-s 5.7)": ["--sensitivity", "5.7"]}
    runs[f"adaptive (default, settle_bsr {default})"] = []
    runs.update({f"adaptive (settle_bsr {s})": s for s in settles if s != default})
    with tempfile.TemporaryDirectory(dir=atlas_root, prefix=".modes-") as scratch:
        for n, (label, how) in enumerate(runs.items()):
            atlas = Atlas(Path(scratch) / f"run{n}")
            for species in PROTEOMES:
                atlas.proteins(species).parent.mkdir(parents=True)
                shutil.copy(source.proteins(species), atlas.proteins(species))
            found: dict[str, float | str] = {}
            for species_b in ("mouse", "xenopus_tropicalis"):
                if isinstance(how, list):
                    command = [*cli, species_b, *how, "--threads", str(threads), "--atlas", str(atlas.root)]
                elif isinstance(how, str):
                    command = [sys.executable, "-c", how, str(atlas.root), species_b, str(threads)]
                else:
                    command = [sys.executable, "-c", SETTLE_CHILD, str(atlas.root), species_b, str(threads), str(how)]
                wall, peak, _ = timed(command, label)
                ran = read_provenance(atlas.alignment("human", species_b))
                found["search"] = f"{ran['mode']}, -s {ran['sensitivity']}" + (
                    f" after -s {ran['fast_sensitivity']} below BSR {ran['settle_bsr']}"
                    if ran["mode"] == "adaptive"
                    else ""
                )
                found[f"{species_b} s"], found[f"{species_b} GB"] = wall, peak
                out = Path(scratch) / f"run{n}-{species_b}.parquet"
                map_species(atlas, ["human", species_b], params=MappingParams(evidence="alignment"), out=out)
                r = evaluate(pl.read_parquet(out).to_arrow(), truths[species_b], "greedy")
                found[f"{species_b} P"], found[f"{species_b} R"] = r.precision, r.recall
                print(
                    f"{label}: human × {species_b} {wall:.1f} s, greedy P {r.precision:.4f} R {r.recall:.4f} "
                    f"(provenance: {found['search']}); load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
            results[label] = found
    print(f"\n### `orthovec align`: adaptive vs exhaustive search, {threads} threads, whole proteomes\n")
    print("| search | human × mouse s | peak GB | Ensembl 1:1 P | R | human × frog s | DIOPT≥5 1:1 P | R |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        print(
            f"| {label} | {r['mouse s']:.1f} | {r['mouse GB']:.2f} | {r['mouse P']:.4f} | {r['mouse R']:.4f} "
            f"| {r['xenopus_tropicalis s']:.1f} | {r['xenopus_tropicalis P']:.4f} | {r['xenopus_tropicalis R']:.4f} |"
        )
    print("\nprovenance of each table (mode and search):")
    for label, r in results.items():
        print(f"- {label}: {r['search']}")
    exhaustive = results.pop(FORMER)
    print(f"\nspeed-ups and quality changes against the {FORMER}:")
    for label, adaptive in results.items():
        mouse = float(exhaustive["mouse s"]) / float(adaptive["mouse s"])
        frog = float(exhaustive["xenopus_tropicalis s"]) / float(adaptive["xenopus_tropicalis s"])
        print(
            f"\n{label}: speed-up human × mouse {mouse:.2f}x, human × frog {frog:.2f}x; quality change "
            f"(this − former): Ensembl P {float(adaptive['mouse P']) - float(exhaustive['mouse P']):+.4f} "
            f"R {float(adaptive['mouse R']) - float(exhaustive['mouse R']):+.4f}; "
            f"DIOPT P {float(adaptive['xenopus_tropicalis P']) - float(exhaustive['xenopus_tropicalis P']):+.4f} "
            f"R {float(adaptive['xenopus_tropicalis R']) - float(exhaustive['xenopus_tropicalis R']):+.4f}"
        )


def symbols_of(atlas_root: Path, species: str) -> set[str]:
    from orthovec.schemas.atlas import Atlas

    frame = pl.read_parquet(Atlas(atlas_root).proteins(species), columns=["gene_symbol"])
    return set(frame["gene_symbol"].drop_nulls().str.to_uppercase().to_list())


def ensembl_truth(atlas_root: Path) -> pl.DataFrame:
    """All Ensembl human → mouse ortholog rows whose two genes (by symbol) are in the proteome files."""
    from orthovec.lookup.homology.imported import import_biomart

    truth = pl.from_arrow(import_biomart(DATA / "orthologs" / "human_mouse_ensembl_biomart.csv.gz", "human", "mouse"))
    assert isinstance(truth, pl.DataFrame)
    human, mouse = symbols_of(atlas_root, "human"), symbols_of(atlas_root, "mouse")
    return truth.filter(
        pl.col("gene_symbol_a").str.to_uppercase().is_in(human)
        & pl.col("gene_symbol_b").str.to_uppercase().is_in(mouse)
    )


def diopt_truth(atlas_root: Path) -> pl.DataFrame:
    """DIOPT human–frog pairs with ≥ 5 of 7 tools, both genes in the files (Entrez IDs = gene_id)."""
    from orthovec.lookup.homology.imported import import_pairs
    from orthovec.schemas.atlas import Atlas

    atlas = Atlas(atlas_root)
    ids = {
        s: set(pl.read_parquet(atlas.proteins(s), columns=["gene_id"])["gene_id"].to_list())
        for s in ("human", "xenopus_tropicalis")
    }
    with gzip.open(DATA / "orthologs" / "human_xtropicalis_diopt_7tools.tsv.gz", "rt") as handle:
        diopt = pl.read_csv(handle, separator="\t", infer_schema_length=0)
    kept = diopt.filter(
        (pl.col("TOTAL").cast(pl.Int32) >= 5)
        & pl.col("HSAP").is_in(ids["human"])
        & pl.col("XTROP").is_in(ids["xenopus_tropicalis"])
    ).select("HSAP", "XTROP")
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as pairs:
        kept.write_csv(pairs.name, separator="\t")
    truth = pl.from_arrow(import_pairs(Path(pairs.name), "human", "xenopus_tropicalis"))
    Path(pairs.name).unlink()
    assert isinstance(truth, pl.DataFrame)
    return truth


def quality(atlas_root: Path, species_b: str, truth: pl.DataFrame, reference_15b: bool) -> None:
    from orthovec.lookup.homology.evaluate import evaluate
    from orthovec.lookup.homology.mapping import MappingParams, map_species
    from orthovec.schemas.atlas import Atlas

    atlas = Atlas(atlas_root)
    truth_arrow = truth.to_arrow()
    one2one = truth.filter(pl.col("relation") == "one2one").height
    print(f"\n### human × {species_b}: {one2one:,} reference one-to-one pairs with both genes in the files\n")
    print("| evidence | pairs | precision | recall | F1 | called |\n|---|---|---|---|---|---|")
    has_vectors = bool(atlas.models_for("human")) and bool(atlas.models_for(species_b))
    sources = ["alignment", "embedding", "fused"] if has_vectors else ["alignment"]
    graphs: dict[str, Evaluation] = {}
    for evidence in sources:
        started = time.perf_counter()
        summary = map_species(atlas, ["human", species_b], params=MappingParams(evidence=evidence))[0]  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        table = pl.read_parquet(summary.path).to_arrow()
        for choice in ("rbh", "greedy", "optimal"):
            graphs[evidence] = evaluate(table, truth_arrow, choice)
            print_row(f"{evidence} ({seconds:.1f} s)", choice, graphs[evidence])
    if reference_15b:
        published = pl.read_csv(DATA / "reference" / "seed_human_mouse_LM_O2O_esm2_15B.csv.gz").select(
            pl.col("Human gene name").alias("gene_symbol_a"), pl.col("Mouse gene name").alias("gene_symbol_b")
        )
        published = published.with_columns(
            species_a=pl.lit("human"),
            gene_id_a=pl.col("gene_symbol_a"),
            species_b=pl.lit("mouse"),
            gene_id_b=pl.col("gene_symbol_b"),
            relation=pl.lit("one2one"),
        )
        print_row("published ESM-2 15B (Pearson)", "greedy", evaluate(published.to_arrow(), truth_arrow, "relation"))
    print("\nHomology graph (pairs with a relation) against every reference ortholog pair, all homology types:\n")
    print("| evidence | graph pairs | precision | recall |\n|---|---|---|---|")
    for evidence, r in graphs.items():
        print(f"| {evidence} | {r.graph_pairs:,} | {r.graph_precision or 0:.4f} | {r.graph_recall or 0:.4f} |")


def margin_sweep(atlas_root: Path, truth: pl.DataFrame, margins: list[float]) -> None:
    """The alignment homology graph at each --margin against every Ensembl ortholog pair."""
    from orthovec.lookup.homology.evaluate import evaluate
    from orthovec.lookup.homology.mapping import MappingParams, map_species
    from orthovec.schemas.atlas import Atlas

    print("\n| `--margin` | graph pairs | precision | recall | one2one precision | one2one recall |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for margin in margins:
            params = MappingParams(evidence="alignment", margin=margin)
            out = Path(scratch) / f"{margin}.parquet"
            map_species(Atlas(atlas_root), ["human", "mouse"], params=params, out=out)
            r = evaluate(pl.read_parquet(out).to_arrow(), truth.to_arrow(), "relation")
            print(
                f"| {margin} | {r.graph_pairs:,} | {r.graph_precision or 0:.4f} | {r.graph_recall or 0:.4f} "
                f"| {r.precision:.4f} | {r.recall:.4f} |"
            )


def print_row(label: str, choice: str, r: Evaluation) -> None:
    print(f"| {label} | {choice} | {r.precision:.4f} | {r.recall:.4f} | {r.f1:.4f} | {r.n_pairs:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atlas", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--proteins-only", action="store_true", help="Write missing PROTEINS tables first.")
    parser.add_argument("--random-vectors", type=int, metavar="DIM", help="Write Gaussian gene vectors first.")
    parser.add_argument("--modes", action="store_true", help="Adaptive vs exhaustive align, timed and scored.")
    parser.add_argument("--settle", default="", help="With --modes: comma-separated settle_bsr values to run too.")
    parser.add_argument("--skip-speed", action="store_true", help="Skip the easy-search comparison.")
    parser.add_argument("--speed-proteins", type=int, help="Time both tools on the first N proteins of each species.")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--margins", help="Comma-separated --margin values to sweep (human × mouse graph).")
    args = parser.parse_args()
    if args.proteins_only:
        ensure_proteins(args.atlas)
    if args.random_vectors:
        write_random_vectors(args.atlas, args.random_vectors)
    if args.modes:
        print(f"machine: {os.cpu_count()} CPUs; load before: {os.getloadavg()}")
        modes(args.atlas, args.threads, [float(v) for v in args.settle.split(",") if v])
        print(f"load after: {os.getloadavg()}")
    if not args.skip_speed:
        speed(args.atlas, args.threads, args.speed_proteins)
    if args.skip_quality:
        return
    from orthovec.lookup.homology.align import align_species
    from orthovec.schemas.atlas import Atlas

    for species_b in ("mouse", "xenopus_tropicalis"):
        align_species(Atlas(args.atlas), "human", species_b, threads=args.threads)
    quality(args.atlas, "mouse", ensembl_truth(args.atlas), reference_15b=True)
    quality(args.atlas, "xenopus_tropicalis", diopt_truth(args.atlas), reference_15b=False)
    if args.margins:
        margin_sweep(args.atlas, ensembl_truth(args.atlas), [float(m) for m in args.margins.split(",")])


if __name__ == "__main__":
    main()
