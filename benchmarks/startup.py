"""Cold start of the `orthovec` command, beside `python -c pass` measured in the same run.

    python benchmarks/startup.py [--repeats 5] [--atlas DIR]

Each figure is the median wall time of `--repeats` fresh processes (the OS file cache warm, as
it is for anyone running commands all day). Without `--atlas`, a demo atlas is built first with a
tiny random-weight model in a temporary directory (not timed), so `orthovec query GENE` is timed on
a small real atlas. Targets (issue 12): every `--help` < 1 s, a gene query < 3 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = ("index", "query", "map", "align", "integrate", "serve", "build", "export")


def _median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return statistics.median(times)


def _demo_atlas(workdir: Path) -> Path:
    weights = workdir / "tiny.pt"
    atlas = workdir / "atlas"
    subprocess.run([str(BIN / "orthovec"), "random-weights", str(weights), "--arch", "tiny"], check=True)
    subprocess.run(
        [str(BIN / "orthovec"), "demo", "--weights", str(weights), "--atlas", str(atlas)],
        check=True,
        capture_output=True,
    )
    return atlas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--atlas", type=Path, help="An atlas holding human and xenopus_tropicalis (the demo's).")
    args = parser.parse_args()
    orthovec = str(BIN / "orthovec")
    with tempfile.TemporaryDirectory() as tmp:
        atlas = args.atlas or _demo_atlas(Path(tmp))
        baseline = _median_seconds([sys.executable, "-c", "pass"], args.repeats)
        rows = [("python -c pass", baseline)]
        rows.append(("orthovec --help", _median_seconds([orthovec, "--help"], args.repeats)))
        listed = subprocess.run([orthovec, "--help"], capture_output=True, text=True).stdout
        for command in COMMANDS:
            if f"  {command} " in listed:
                rows.append(
                    (f"orthovec {command} --help", _median_seconds([orthovec, command, "--help"], args.repeats))
                )
        query = [orthovec, "query", "ETF1", "--from", "human", "--to", "xenopus_tropicalis", "--atlas", str(atlas)]
        rows.append(("orthovec query ETF1 (demo atlas)", _median_seconds(query, args.repeats)))
    print(f"| command | median of {args.repeats} cold runs | × `python -c pass` |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.3f} s | {seconds / baseline:.1f}× |")


if __name__ == "__main__":
    main()
