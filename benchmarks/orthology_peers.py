"""orthovec's alignment-only path beside Proteinortho 6 on the shared proteomes: time and one-to-one quality.

    nice -n 10 python benchmarks/orthology_peers.py --out benchmarks/out/peers [--threads 2] [--frog]

Both tools get the same sequences (the proteins `orthovec index` registers) on the same cores,
one after the other in this run:
- Proteinortho (Debian's `proteinortho`, default run: DIAMOND, `-p=diamond`), timed from its
  FASTA files to its orthogroup table; its one-to-one calls are the groups holding exactly one
  gene of each species;
- orthovec, timed from the FASTA files: `orthovec index --no-embed` (proteins and the search
  database, no weights), `orthovec align` (the default, adaptive search) and
  `orthovec map --evidence alignment`; its one-to-one calls are the greedy ones.
Each is scored with `evaluate` against Ensembl one2one (human × mouse; genes present in both
files, case-insensitive symbols) and, with `--frog`, DIOPT pairs of at least 5 of 7 tools
(human × X. tropicalis, Entrez gene IDs). The machine's CPUs and load are printed with the table.

Proteinortho is not a Python package: install it with `apt-get install -y proteinortho diamond-aligner`
(Debian); without it the script says so and exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from align_quality import DATA, PROTEOMES, diopt_truth, ensembl_truth, proteome

INSTALL = "apt-get update && apt-get install -y proteinortho diamond-aligner"


def run(command: list[str], cwd: Path, label: str) -> float:
    """Wall seconds of one command; its output goes to a log file beside the results."""
    started = time.perf_counter()
    with open(cwd / f"{label}.log", "w") as log:
        done = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"{label} failed (exit {done.returncode}); see {cwd / f'{label}.log'}")
    return time.perf_counter() - started


def inputs(out: Path, first: int | None) -> dict[str, Path]:
    """The shared proteome files, or their first N records (a quick check of the whole procedure)."""
    import gzip

    if first is None:
        return {species: proteome(species) for species in PROTEOMES}
    files = {}
    for species in PROTEOMES:
        files[species] = out / "inputs" / f"{species}.fasta"
        files[species].parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(proteome(species), "rt") as handle:
            text = handle.read().split(">")[1 : first + 1]
        files[species].write_text("".join(f">{record}" for record in text))
    return files


def orthovec_path(
    out: Path, fasta: dict[str, Path], species_b: str, threads: int
) -> tuple[dict[str, float], pa.Table, Path]:
    """index --no-embed both, align, map --evidence alignment: (seconds per step, mapping, atlas)."""
    atlas = out / f"atlas-{species_b}"
    shutil.rmtree(atlas, ignore_errors=True)
    cli = [sys.executable, "-m", "orthovec.cli"]
    steps: dict[str, float] = {}
    for species in ("human", species_b):
        index = [*cli, "index", str(fasta[species]), "--species", species, "--no-embed", "--atlas", str(atlas)]
        steps[f"index {species}"] = run(index, out, f"orthovec-index-{species}-{species_b}")
    align = [*cli, "align", "human", species_b, "--threads", str(threads), "--atlas", str(atlas)]
    steps["align"] = run(align, out, f"orthovec-align-{species_b}")
    mapped = out / f"orthovec-human__{species_b}.parquet"
    map_command = [*cli, "map", "human", species_b, "--evidence", "alignment", "--out", str(mapped)]
    steps["map"] = run([*map_command, "--atlas", str(atlas)], out, f"orthovec-map-{species_b}")
    return steps, pl.read_parquet(mapped).to_arrow(), atlas


def proteinortho(out: Path, atlas: Path, species_b: str, threads: int) -> tuple[float, pa.Table]:
    """Proteinortho's default run on the proteins orthovec registered: (seconds, one-to-one pairs)."""
    from orthovec.schemas.atlas import Atlas

    work = out / f"proteinortho-{species_b}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    genes: dict[str, pl.DataFrame] = {}
    for species in ("human", species_b):
        proteins = pl.read_parquet(Atlas(atlas).proteins(species))
        genes[species] = proteins.select("protein_id", "gene_id", "gene_symbol")
        (work / f"{species}.fasta").write_text(
            "".join(f">{p}\n{s}\n" for p, s in zip(proteins["protein_id"], proteins["sequence"], strict=True))
        )
    command = ["proteinortho", "-project=peers", f"-cpus={threads}", "-p=diamond", "human.fasta", f"{species_b}.fasta"]
    seconds = run(command, work, "proteinortho")
    groups = pl.read_csv(work / "peers.proteinortho.tsv", separator="\t", infer_schema_length=0)
    one2one = groups.filter(
        (pl.col("human.fasta") != "*")
        & (pl.col(f"{species_b}.fasta") != "*")
        & ~pl.col("human.fasta").str.contains(",")
        & ~pl.col(f"{species_b}.fasta").str.contains(",")
    )
    pairs = (
        one2one.select(pl.col("human.fasta").alias("protein_a"), pl.col(f"{species_b}.fasta").alias("protein_b"))
        .join(genes["human"].rename(lambda c: f"{c}_a"), left_on="protein_a", right_on="protein_id_a")
        .join(genes[species_b].rename(lambda c: f"{c}_b"), left_on="protein_b", right_on="protein_id_b")
        .select(
            pl.lit("human").alias("species_a"),
            "gene_id_a",
            "gene_symbol_a",
            pl.lit(species_b).alias("species_b"),
            "gene_id_b",
            "gene_symbol_b",
            pl.lit("one2one").alias("relation"),
        )
    )
    return seconds, pairs.to_arrow()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/peers"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frog", action="store_true", help="Also human × X. tropicalis against DIOPT ≥ 5.")
    parser.add_argument("--first", type=int, help="Only the first N proteins of each file (a quick check).")
    args = parser.parse_args()
    missing = [tool for tool in ("proteinortho", "diamond") if shutil.which(tool) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed. Install Proteinortho with: {INSTALL}")
        return
    if not DATA.is_dir():
        print(f"skipped: needs the shared proteomes in {DATA}")
        return
    from orthovec.lookup.homology.evaluate import evaluate

    args.out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["proteinortho", "-version"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} CPUs; load before: {os.getloadavg()}; Proteinortho: {version[-60:]}")
    rows = []
    for species_b in ["mouse", *(["xenopus_tropicalis"] if args.frog else [])]:
        steps, mapping, atlas = orthovec_path(args.out, inputs(args.out, args.first), species_b, args.threads)
        truth = ensembl_truth(atlas) if species_b == "mouse" else diopt_truth(atlas)
        ours = evaluate(mapping, truth.to_arrow(), "greedy")
        seconds, theirs_pairs = proteinortho(args.out, atlas, species_b, args.threads)
        theirs = evaluate(theirs_pairs, truth.to_arrow(), "relation")
        reference = "Ensembl one2one" if species_b == "mouse" else "DIOPT ≥ 5"
        detail = ", ".join(f"{step} {s:.0f} s" for step, s in steps.items())
        rows.append((species_b, reference, "orthovec (alignment only)", sum(steps.values()), ours, detail))
        rows.append((species_b, reference, "Proteinortho 6 (diamond)", seconds, theirs, "one run"))
    print(f"load after: {os.getloadavg()}\n")
    print("| pair | reference | tool | wall s | 1:1 precision | 1:1 recall | 1:1 pairs | steps |")
    print("|---|---|---|---|---|---|---|---|")
    for species_b, reference, tool, seconds, r, detail in rows:
        print(
            f"| human × {species_b} | {reference} | {tool} | {seconds:.0f} | {r.precision:.4f} | {r.recall:.4f} "
            f"| {r.n_pairs:,} | {detail} |"
        )
    for i in range(0, len(rows), 2):
        ours_row, theirs_row = rows[i], rows[i + 1]
        print(
            f"\nhuman × {ours_row[0]}: Proteinortho / orthovec wall time {theirs_row[3] / ours_row[3]:.2f}; "
            f"recall {ours_row[4].recall - theirs_row[4].recall:+.4f}, "
            f"precision {ours_row[4].precision - theirs_row[4].precision:+.4f} (orthovec − Proteinortho)"
        )


if __name__ == "__main__":
    main()
