"""`orthovec build` against the number of species (issue 20 item 5).

    nice -n 10 python benchmarks/build_scaling.py [--sizes 2,4,8] [--records 200] [--jobs 1]

For each N, a fresh atlas of N species is built from one manifest, then an (N+1)-th species is
added to the manifest and the same atlas built again. The species are the first `--records`
proteins of the shared human Swiss-Prot proteome with planted divergence (`tests/diverged.py`:
species k has k x 5% of its residues substituted), so every pair has true one-to-one orthologs.
Embeddings come from a tiny random ESM-2 (no pretrained weights here): the index times measure
the plumbing, not a real model's cost.

For every build the script prints, per step kind, how many steps ran and their summed time, and
the build's wall time; then, as the ratio against the baseline measured in the same run, each
build's wall time over the fresh N = smallest build. Adding one species to N must run one
fetch, proteins, database and index step, N align and N map steps and the groups (checked: the
script exits 1 otherwise). The markdown table for docs/build.md is printed last and written to
benchmarks/out/build_scaling.md, with the machine and its load (`uptime`) at start and end.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.diverged, run from anywhere

import torch

from orthovec.build.manifest import load_manifest
from orthovec.build.plan import BuildOptions, BuildReport, run_build
from orthovec.embedding.random_weights import write_random_checkpoint
from orthovec.schemas.atlas import Atlas
from tests.diverged import diverged_proteomes

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteomes" / "human_sprot2014.fasta.gz"
OUT = Path(__file__).resolve().parent / "out"
KINDS = ("fetch", "proteins", "database", "index", "align", "map", "groups")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def manifest(folder: Path, weights: Path, sources: dict[str, Path], names: list[str], threads: int) -> Path:
    path = folder / f"atlas-{len(names)}.toml"
    species = "".join(f'\n[[species]]\nname = "{name}"\nsource = "{sources[name]}"\n' for name in names)
    path.write_text(f'[atlas]\nweights = "{weights}"\nalign = true\nalign_threads = {threads}\n{species}')
    return path


def build(path: Path, atlas: Path, jobs: int) -> tuple[BuildReport, float]:
    started = time.perf_counter()
    report = run_build(load_manifest(path), Atlas(atlas), BuildOptions(jobs=jobs))
    return report, time.perf_counter() - started


def ran(report: BuildReport) -> dict[str, tuple[int, float]]:
    """Per step kind: how many steps ran, and their summed seconds."""
    counts: Counter[str] = Counter()
    seconds: dict[str, float] = dict.fromkeys(KINDS, 0.0)
    for outcome in report.outcomes:
        if outcome.status == "ran":
            counts[outcome.kind] += 1
            seconds[outcome.kind] += outcome.seconds
    return {kind: (counts[kind], seconds[kind]) for kind in KINDS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,4,8", help="numbers of species N, comma-separated")
    parser.add_argument("--records", type=int, default=200, help="proteins per species")
    parser.add_argument("--jobs", type=int, default=1, help="`build --jobs`")
    parser.add_argument("--threads", type=int, default=1, help="MMseqs2 threads per alignment, torch threads")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    # torch's default (every core) competes with the alignments and the rest of a shared machine;
    # the index steps then measure that contention more than the build
    torch.set_num_threads(args.threads)
    if not SOURCE.is_file():
        print(f"needs {SOURCE} (the shared proteomes)", file=sys.stderr)
        return 2
    machine = f"{platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    start_load = uptime()
    print(f"machine: {machine}\nstart: {start_load}", flush=True)
    rows: list[tuple[str, dict[str, tuple[int, float]], float]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="orthovec-scaling-") as scratch:
        work = Path(scratch)
        weights = write_random_checkpoint(work / "tiny.pt", "tiny")
        names = [f"s{k}" for k in range(max(sizes) + 1)]
        sources = diverged_proteomes(SOURCE, names, work / "sources", records=args.records, step=0.05)
        for n in sizes:
            atlas = work / f"atlas-{n}"
            fresh, fresh_s = build(manifest(work, weights, sources, names[:n], args.threads), atlas, args.jobs)
            rows.append((f"fresh, N = {n}", ran(fresh), fresh_s))
            print(f"fresh N={n}: {fresh_s:.1f} s {ran(fresh)}", flush=True)
            added, added_s = build(manifest(work, weights, sources, names[: n + 1], args.threads), atlas, args.jobs)
            counts = {kind: count for kind, (count, _) in ran(added).items()}
            rows.append((f"add 1 to N = {n}", ran(added), added_s))
            print(f"add one to N={n}: {added_s:.1f} s {ran(added)}", flush=True)
            expected = {"fetch": 1, "proteins": 1, "database": 1, "index": 1, "align": n, "map": n, "groups": 1}
            if counts != expected:
                failures.append(f"adding one species to N = {n} ran {counts}, expected {expected}")
    end_load = uptime()
    baseline = rows[0][2]
    header = ["build", *(f"{kind} (steps, s)" for kind in KINDS), "wall", "wall / fresh N = " + str(sizes[0])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, per_kind, wall in rows:
        cells = [f"{count}, {seconds:.1f}" if count else "0" for count, seconds in per_kind.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {wall:.1f} s | {wall / baseline:.2f} |")
    table = "\n".join(lines)
    note = (
        f"{args.records} proteins per species, `--jobs {args.jobs}`, {args.threads} MMseqs2 thread(s) per pair, "
        f"tiny random ESM-2 ({args.threads} torch thread(s)). Machine: {machine}. "
        f"Load at start: {start_load}; at end: {end_load}."
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "build_scaling.md").write_text(f"{table}\n\n{note}\n")
    print(f"\n{table}\n\n{note}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
