"""One MMseqs2 search database per species, built once and reused by every pair and every query.

Aligning N species pairwise used to build 2·N(N−1) databases and as many self-score runs; now
each species has one, in `ATLAS/species/<name>/mmseqs/<key>/`, where the key hashes the species'
distinct sequences (their content hashes), the MMseqs2 version and this layout's version. It
holds:
- `seqs`: the MMseqs2 sequence database, one entry per distinct sequence, named by its hash;
- `self_scores.parquet`: each sequence aligned to itself (`seq_hash`, `self_bits`), the blast
  score ratio's normaliser, so no pair recomputes it;
- `seqs.idx` (only once a sequence query asked for it): MMseqs2's precomputed k-mer index, which
  turns a single-query search from a ~12 s index build into a ~0.2 s memory map. It costs about
  1 GB per species on disk (a k-mer table of fixed size), so alignment, which builds its table in
  memory once per pair anyway, never asks for it;
- `database.json`: what was built, from what, and the proteins set aside.

Proteins MMseqs2 cannot score are set aside with their reason (a `DataWarning` at build time
and in every alignment's provenance): its Smith–Waterman works in 16-bit integers, so a
self-alignment whose raw score reaches 32,766 saturates or overflows (a 92k-residue protein
"scored" 1.7e9 bits against itself), and a protein longer than 5,957 residues can wrap round
to a plausible but wrong value. Ten of the 17,459 human Swiss-Prot proteins (titin, nebulin...)
are set aside this way; no BSR involving them could be right.

Safe under kill and concurrency: a database is built in `mmseqs/.build.<pid>/` and renamed into
place only when complete; a run that finds its key already there uses it; builds of dead
processes are swept by the next one. A database whose key no longer matches the proteins is
removed after the new one is in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from orthovec.core.files import atomic_write_text, disk_error, process_alive
from orthovec.core.logs import get_logger, warn_data
from orthovec.lookup.homology.mmseqs import (
    RAW_SCORE_LIMIT,
    WRAP_SAFE_LENGTH,
    create_db,
    mmseqs_version,
    run_mmseqs,
    self_hits,
    thread_args,
    write_fasta,
)
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound, Unavailable
from orthovec.schemas.tables import PROTEINS, read_table

LAYOUT_VERSION = 1
MANIFEST = "database.json"
logger = get_logger("align")


@dataclass(frozen=True)
class SearchDatabase:
    """A built species database (see the module docstring for its files)."""

    species: str
    root: Path
    manifest: dict[str, Any]

    @property
    def db(self) -> Path:
        """The MMseqs2 sequence database (a path prefix, as MMseqs2 names databases)."""
        return self.root / "seqs"

    @property
    def index(self) -> Path | None:
        """The precomputed k-mer index, when one was built (MMseqs2 takes it in place of `db`)."""
        path = self.root / "seqs.idx"
        return path if path.is_file() and (self.root / "seqs.idx.index").is_file() else None

    @property
    def set_aside(self) -> list[dict[str, Any]]:
        """Sequences left out: `seq_hash`, `length`, `proteins` (their IDs) and `reason`."""
        return list(self.manifest.get("set_aside", []))

    def self_scores(self) -> dict[str, float]:
        """Bits of each sequence aligned to itself, by `seq_hash`."""
        frame = pl.read_parquet(self.root / "self_scores.parquet")
        return dict(zip(frame["seq_hash"].to_list(), frame["self_bits"].to_list(), strict=True))


def species_proteins(atlas: Atlas, species: str) -> pa.Table:
    """The PROTEINS columns alignment needs, or NotFound naming the species the atlas holds."""
    path = atlas.proteins(species)
    if not path.is_file():
        known = atlas.species_names()
        if species in known:  # gene tables of an older orthovec, or a half-removed species: no proteins
            raise NotFound(
                f"{species} in {atlas.root} has no proteins table ({path}), which alignment reads. Index its "
                "proteome again with `orthovec index` (it can register the proteins alone, without embeddings)."
            )
        raise NotFound(
            f"Unknown species '{species}' in {atlas.root} (no {path}); it holds: {', '.join(known) or 'nothing'}. "
            "Index its proteome with `orthovec index` first."
        )
    return read_table(path, PROTEINS).select(
        ["species", "protein_id", "gene_id", "gene_symbol", "seq_hash", "sequence"]
    )


def sequences_hash(proteins: pa.Table) -> str:
    """Content hash of a species' distinct sequences: all a search database depends on."""
    hashes = sorted(set(proteins.column("seq_hash").to_pylist()))
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def database_key(proteins: pa.Table) -> str:
    digest = hashlib.sha256(f"{LAYOUT_VERSION}\n{mmseqs_version()}\n{sequences_hash(proteins)}".encode())
    return digest.hexdigest()[:20]


def ensure_database(atlas: Atlas, species: str, *, threads: int | None = None, search_index: bool = False) -> Path:
    """The species' search database directory, built (or rebuilt, when its sequences changed) if needed.

    `search_index` also builds MMseqs2's k-mer index for fast single-sequence queries.
    """
    return open_database(atlas, species, threads=threads, search_index=search_index).root


def open_database(
    atlas: Atlas, species: str, *, threads: int | None = None, search_index: bool = False
) -> SearchDatabase:
    """`ensure_database`, returning the database with its manifest."""
    proteins = species_proteins(atlas, species)
    home = atlas.search_database(species).absolute()  # MMseqs2 runs in other directories
    target = home / database_key(proteins)
    if not (target / MANIFEST).is_file():
        _build(home, target, species, proteins, threads)
    database = SearchDatabase(species, target, json.loads((target / MANIFEST).read_text()))
    if search_index and database.index is None:
        build_index(database, threads)
    return database


def _build(home: Path, target: Path, species: str, proteins: pa.Table, threads: int | None) -> None:
    logger.info("%s: MMseqs2 search database (once per proteome; reused by every pair and query)", species)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(err, home) from err
    _sweep(home, ".build.")
    work = (home / f".build.{os.getpid()}").resolve()  # absolute: MMseqs2 runs inside it
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        manifest = _fill(work, species, proteins, threads)
        atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        try:
            work.rename(target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not a concurrent build that finished first
                raise
    except OSError as err:
        raise _write_error(err, home) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in home.iterdir():
        if stale.is_dir() and stale != target and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)


def _fill(work: Path, species: str, proteins: pa.Table, threads: int | None) -> dict[str, Any]:
    """Database, self-scores and set-aside list of `proteins`, written into `work`."""
    unique = pl.from_arrow(proteins.select(["seq_hash", "sequence"]))
    assert isinstance(unique, pl.DataFrame)
    unique = unique.unique("seq_hash").sort("seq_hash").with_columns(length=pl.col("sequence").str.len_chars())
    scratch = work / "scratch"
    scratch.mkdir()
    write_fasta(scratch / "all.fasta", unique.select("seq_hash", "sequence").iter_rows())
    create_db(scratch / "all.fasta", scratch / "all", scratch)
    scores = self_hits(scratch / "all", scratch, threads).select(
        pl.col("query").alias("seq_hash"), pl.col("bits").alias("self_bits"), "raw"
    )
    checked = unique.join(scores, on="seq_hash", how="left")
    out_of_range = (pl.col("raw") >= RAW_SCORE_LIMIT) | (pl.col("raw") < 0) | (pl.col("length") > WRAP_SAFE_LENGTH)
    aside = checked.filter(out_of_range.fill_null(False))
    kept = checked.filter(~out_of_range.fill_null(False))
    # A sequence MMseqs2 cannot align to itself (composition-corrected score <= 0: a run of X, a
    # few residues) has no self-score here; its hits take their own bits as the normaliser.
    kept.filter(pl.col("self_bits").is_not_null()).select("seq_hash", "self_bits").write_parquet(
        work / "self_scores.parquet"
    )
    write_fasta(scratch / "seqs.fasta", kept.select("seq_hash", "sequence").iter_rows())
    create_db(scratch / "seqs.fasta", work / "seqs", scratch)
    shutil.rmtree(scratch)
    set_aside = _set_aside(proteins, aside)
    if set_aside:
        examples = ", ".join(f"{r['proteins'][0]} ({r['length']:,} residues)" for r in set_aside[:5])
        warn_data(
            f"{species}: {len(set_aside)} protein sequence(s) set aside from alignment because MMseqs2's 16-bit "
            f"scores cannot hold their self-alignment (no BSR involving them could be right): {examples}"
            + (" ..." if len(set_aside) > 5 else "")
        )
    return {
        "species": species,
        "layout": LAYOUT_VERSION,
        "mmseqs": mmseqs_version(),
        "sequences_sha256": sequences_hash(proteins),
        "sequences": kept.height,
        "set_aside": set_aside,
    }


def _set_aside(proteins: pa.Table, aside: pl.DataFrame) -> list[dict[str, Any]]:
    if aside.is_empty():
        return []
    ids = pl.from_arrow(proteins.select(["seq_hash", "protein_id"]))
    assert isinstance(ids, pl.DataFrame)
    by_hash = ids.group_by("seq_hash").agg(pl.col("protein_id").sort())
    rows = aside.join(by_hash, on="seq_hash").sort("length", descending=True)
    reason = (
        f"self-alignment score beyond MMseqs2's 16-bit range (raw score {RAW_SCORE_LIMIT:,}; "
        f"longer than {WRAP_SAFE_LENGTH:,} residues may wrap round)"
    )
    return [
        {"seq_hash": row["seq_hash"], "length": row["length"], "proteins": row["protein_id"], "reason": reason}
        for row in rows.iter_rows(named=True)
    ]


def build_index(database: SearchDatabase, threads: int | None) -> None:
    """MMseqs2's k-mer index of the database, built beside it in a private directory, then renamed in."""
    logger.info("%s: MMseqs2 k-mer index for sequence queries (once; about 1 GB)", database.species)
    _sweep(database.root, ".index.")
    work = (database.root / f".index.{os.getpid()}").resolve()
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        for part in database.root.glob("seqs*"):
            if part.is_file() and ".idx" not in part.name:
                os.link(part, work / part.name)
        arguments = ["createindex", str(work / "seqs"), str(work / "tmp"), "-v", "1", *thread_args(threads)]
        run_mmseqs(arguments, work, "createindex")
        # The index's own small files first, its data last: `SearchDatabase.index` needs both.
        for name in ("seqs.idx.dbtype", "seqs.idx", "seqs.idx.index"):
            os.replace(work / name, database.root / name)
    except OSError as err:
        raise _write_error(err, database.root) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sweep(home: Path, prefix: str) -> None:
    """Remove builds (`prefix<pid>`) left by processes that no longer exist."""
    for stale in home.glob(f"{prefix}*"):
        pid = stale.name.removeprefix(prefix)
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _write_error(err: OSError, path: Path) -> Exception:
    found = disk_error(err, path)
    if found is not None:
        return found
    if isinstance(err, PermissionError):
        return Unavailable(
            f"{path}: no permission to write the MMseqs2 search database there. Alignment and sequence "
            "queries build it once per species; run them once where the atlas is writable, or copy the atlas."
        )
    return err
