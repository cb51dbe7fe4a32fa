"""Sequence-alignment evidence between two species: MMseqs2 all-vs-all, reduced to gene pairs.

Embeddings stand in for homology; alignment measures it. On close species an all-vs-all MMseqs2
search with reciprocal best bit scores is nearly exact (human × mouse: precision 0.999, recall
0.997 against Ensembl one2one), so `orthovec map` fuses it with the embedding gene by gene.

What runs (one process per MMseqs2 module, so a killed orthovec takes its child with it):
- each species' search database and self-scores come from `databases.py`, built once per
  proteome and reused by every pair;
- candidates come from MMseqs2's own k-mer prefilter, both directions, because the prefilter is
  not symmetric; every candidate is then scored by exact Smith–Waterman with a backtrace
  (`mmseqs align -a`, e-value cut `max_evalue`), which gives true identity and coverages;
- each candidate pair is aligned once: the 83% of B→A's candidates that A→B proposed too (human ×
  mouse) take A→B's alignment, transposed, which cut `align human mouse` from 104 s to 75 s;
- a pair's bits divided by the larger of its two self-scores is its blast score ratio (BSR,
  Rasko et al. 2005) in (0, 1], which compares across gene lengths and species pairs where raw
  bits do not;
- protein pairs are reduced to gene pairs: the best-scoring isoform pair (either direction) gives
  bits, e-value, identity and both coverages.

Three modes (`AlignParams.mode`, recorded in the table's provenance):
- `adaptive` (default): orthology needs each gene's best hits, not every hit. A fast prefilter
  (`-s fast_sensitivity`) finds the close pairs, which are most of them; only the queries whose
  best hit has a BSR below `settle_bsr` (no confident partner yet) are searched again at
  `-s sensitivity`, keeping their best `recheck_max_seqs` candidates (100 in place of 300 halved
  that pass's Smith–Waterman time, human × mouse, with the same greedy one-to-one precision and
  recall). Their hits from both passes are kept. Measured in
  `benchmarks/align_quality.py` against the exhaustive search (docs/performance.md).
- `exhaustive`: every query at `-s sensitivity` (`orthovec align --sensitivity S`), the search
  MMseqs2's defaults make; also what the default becomes for two species of at most `small`
  distinct sequences each, where MMseqs2's fixed cost per prefilter (~2 s) outweighs what the
  fast pass saves.
- `all-pairs`: what the default becomes for two proteomes whose residues multiply to at most
  `all_pairs_cells` (2·10¹⁰, about 2 s of Smith–Waterman on one core): no prefilter, every
  sequence pair aligned, which costs less than one prefilter's k-mer tables and finds every hit
  the prefilter would pass, with the same scores (the shipped demo's 150 × 150 proteins: 0.4 s
  against ~6 s for the exhaustive search's two prefilters, one thread; on 1,000 human × 1,000
  mouse Swiss-Prot proteins, every pair gave 3,272 hits at E ≤ 10⁻³, the prefilter's candidates
  2,333 of them, with equal scores, and 588 queries had a hit against 532).

The table is written once, atomically (`write_table`), to `ATLAS/alignments/A__B.parquet`, with
MMseqs2's version, the parameters, a hash of each species' proteins and the proteins set aside
in its provenance; a rerun with the same inputs returns it untouched. Work files live in a
per-process directory beside it, removed on success and by the next run when their process is
gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa

from orthovec.core.files import disk_error, process_alive
from orthovec.core.logs import get_logger
from orthovec.core.version import __version__
from orthovec.lookup.homology import mmseqs
from orthovec.lookup.homology.databases import SearchDatabase, open_database, species_proteins
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid
from orthovec.schemas.pairs import read_alignment
from orthovec.schemas.parameters import check_number
from orthovec.schemas.tables import ALIGNMENT, read_provenance, write_table

Mode = Literal["adaptive", "exhaustive", "all-pairs"]
logger = get_logger("align")


@dataclass(frozen=True)
class AlignParams:
    """MMseqs2 settings that change the result (threads do not, so they are not here)."""

    mode: Mode = "adaptive"
    sensitivity: float = 5.7  # MMseqs2's default `-s`; 7.5 is its most sensitive preset
    fast_sensitivity: float = 1.0  # adaptive: the first pass's `-s`
    settle_bsr: float = 0.3  # adaptive: a query whose best first-pass hit reaches this BSR is settled
    max_evalue: float = 1e-3  # MMseqs2's default `-e`
    max_seqs: int = 300  # MMseqs2's default `--max-seqs`: prefilter hits kept per query
    recheck_max_seqs: int = 100  # adaptive: the second pass's `--max-seqs` (its queries need a best few)
    small: int = 2_000  # adaptive: two species of at most this many distinct sequences get one exhaustive pass
    all_pairs_cells: int = 20_000_000_000  # adaptive: residues A × residues B at most this: align every pair
    all_pairs_max: int = 1_000_000  # ... and distinct sequences A × B at most this


def align_params(sensitivity: float | None = None) -> AlignParams:
    """Adaptive search by default; a `sensitivity` asks for the exhaustive search at that `-s`."""
    if sensitivity is None:
        return AlignParams()
    return AlignParams(mode="exhaustive", sensitivity=float(check_number("sensitivity", sensitivity)))


def for_size(params: AlignParams, proteins: Sequence[pa.Table]) -> AlignParams:
    """A cheaper search where the adaptive one cannot pay. MMseqs2's prefilter costs about 2 s of CPU
    per run whatever its input (its k-mer tables), and Smith–Waterman about 0.1 s per 10⁹ cells
    (residue pairs) on one core. So two proteomes whose residues multiply to at most
    `all_pairs_cells` have every pair aligned, with no prefilter (the shipped demo: 0.4 s against
    ~6 s, and it finds every hit the prefilter passes, with the same scores, and more); up to
    `small` distinct sequences a side, one pass at `-s sensitivity` costs less than the adaptive
    search's two, and misses nothing."""
    if params.mode != "adaptive":
        return params
    distinct = [
        pl.DataFrame({"seq_hash": t.column("seq_hash"), "sequence": t.column("sequence")}).unique("seq_hash")
        for t in proteins
    ]
    cells = math.prod(int(frame["sequence"].str.len_chars().sum()) for frame in distinct)
    if cells <= params.all_pairs_cells and math.prod(frame.height for frame in distinct) <= params.all_pairs_max:
        return replace(params, mode="all-pairs")
    if max(frame.height for frame in distinct) <= params.small:
        return replace(params, mode="exhaustive")
    return params


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
    sensitivity: float | None = None,
) -> Path:
    """Align A's proteins with B's, both directions; write and return `ATLAS/alignments/A__B.parquet`.

    `sensitivity` None runs the adaptive search; a number, the exhaustive search at that MMseqs2
    `-s` (1 to 7.5). Reuses the existing table when the proteins, MMseqs2 version and parameters
    are unchanged.
    """
    if species_a == species_b:
        raise Invalid(f"Align two different species (got {species_a!r} twice).", param="species_b", value=species_b)
    if threads is not None:
        check_number("threads", threads)
    proteins = {name: species_proteins(atlas, name) for name in (species_a, species_b)}
    params = for_size(align_params(sensitivity), list(proteins.values()))
    if params.mode == "all-pairs":
        logger.info(
            "%s × %s: small enough to align every pair of sequences (no prefilter), cheaper here than a k-mer search",
            species_a,
            species_b,
        )
    elif sensitivity is None and params.mode == "exhaustive":
        logger.info(
            "%s × %s: at most %s distinct sequences each, so one exhaustive pass (-s %s), cheaper here than two",
            species_a,
            species_b,
            f"{params.small:,}",
            params.sensitivity,
        )
    target = atlas.alignment(species_a, species_b)
    provenance: dict[str, object] = {
        "mmseqs": mmseqs.mmseqs_version(),
        **asdict(params),
        "proteins_sha256": {name: proteins_hash(table) for name, table in proteins.items()},
        "orthovec": __version__,
    }
    if target.is_file() and _same_inputs(read_provenance(target), provenance):
        logger.info("%s × %s: alignments up to date (%s)", species_a, species_b, target)
        return target
    databases = {name: open_database(atlas, name, threads=threads) for name in (species_a, species_b)}
    provenance["set_aside"] = {
        name: sorted(p for row in db.set_aside for p in row["proteins"]) for name, db in databases.items()
    }
    with _work_dir(target) as work:
        hits = search_both_ways(work, databases[species_a], databases[species_b], params, threads)
        logger.info("%s × %s: reducing %s protein hits to gene pairs", species_a, species_b, f"{hits.height:,}")
        table = gene_pairs(hits, proteins[species_a], proteins[species_b])
        write_table(table, target, ALIGNMENT, provenance)
    logger.info("%s × %s: %s gene pairs → %s", species_a, species_b, f"{table.num_rows:,}", target)
    return target


def align_all(
    atlas: Atlas,
    species: Sequence[str],
    *,
    threads: int | None = None,
    sensitivity: float | None = None,
) -> list[Path]:
    """Every pair of `species` (A before B as given)."""
    if len(species) < 2 or len(set(species)) != len(species):
        raise Invalid("Give at least two different species to align.", param="species", value=list(species))
    return [
        align_species(atlas, a, b, threads=threads, sensitivity=sensitivity)
        for i, a in enumerate(species)
        for b in species[i + 1 :]
    ]


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


def _same_inputs(old: dict[str, object], new: dict[str, object]) -> bool:
    return all(old.get(key) == value for key, value in new.items() if key != "orthovec")


@contextlib.contextmanager
def _work_dir(target: Path) -> Iterator[Path]:
    """A directory private to this process; leftovers of killed runs of the same pair are removed."""
    stem = f".{target.stem}.mmseqs."
    # Absolute: MMseqs2 runs inside this directory, so a relative atlas path would point elsewhere.
    work = (target.parent / f"{stem}{os.getpid()}").resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f"{stem}*"):
            pid = stale.name.removeprefix(stem)
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
    except OSError as err:
        raise (disk_error(err, target) or err) from err
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def search_both_ways(
    work: Path, db_a: SearchDatabase, db_b: SearchDatabase, params: AlignParams, threads: int | None
) -> pl.DataFrame:
    """Protein-level hits of A against B and of B against A, with each sequence's self-score.

    Returns one row per (direction, query seq_hash, target seq_hash) with `self_query`/`self_target`.
    Each candidate pair is aligned once: a pair the B→A prefilter proposes that A→B already aligned
    takes A→B's alignment, transposed (its score differs from a fresh B→A one only by MMseqs2's
    query-side composition correction, a few bits), which halves the Smith–Waterman work.
    """
    self_bits = {"a": db_a.self_scores(), "b": db_b.self_scores()}
    names = {"a": mmseqs.lookup(db_a.db), "b": mmseqs.lookup(db_b.db)}
    forward, candidates = _search(
        work, (db_a.db, db_b.db), (names["a"], names["b"]), self_bits["a"], "A→B", params, threads, _Aligned.nothing()
    )
    backward, _ = _search(
        work,
        (db_b.db, db_a.db),
        (names["b"], names["a"]),
        self_bits["b"],
        "B→A",
        params,
        threads,
        _Aligned(candidates, forward).transposed(),
    )
    # A sequence MMseqs2 could not align to itself (composition-corrected score ≤ 0) takes the
    # hit's own bits as its self-score, so its BSR stays within (0, 1].
    return pl.concat(
        [
            _with_self_scores(forward, self_bits["a"], self_bits["b"]).with_columns(direction=pl.lit("ab")),
            _with_self_scores(backward, self_bits["b"], self_bits["a"]).with_columns(direction=pl.lit("ba")),
        ]
    )


def _with_self_scores(hits: pl.DataFrame, query: dict[str, float], target: dict[str, float]) -> pl.DataFrame:
    return hits.with_columns(
        self_query=pl.col("query").replace_strict(query, default=None, return_dtype=pl.Float32),
        self_target=pl.col("target").replace_strict(target, default=None, return_dtype=pl.Float32),
    ).with_columns(pl.col("self_query", "self_target").fill_null(pl.col("bits")))


@dataclass(frozen=True)
class _Aligned:
    """Pairs already given to Smith–Waterman (`pairs`: query, target names) and the hits among them."""

    pairs: pl.DataFrame
    hits: pl.DataFrame

    @staticmethod
    def nothing() -> _Aligned:
        return _Aligned(
            pl.DataFrame(schema={"query": pl.String, "target": pl.String}), pl.DataFrame(schema=mmseqs.HIT_SCHEMA)
        )

    def plus(self, other: _Aligned) -> _Aligned:
        return _Aligned(pl.concat([self.pairs, other.pairs]), pl.concat([self.hits, other.hits]))

    def transposed(self) -> _Aligned:
        """The same alignments seen from the other side: query and target swap, and so do their coverages."""
        swap = {"query": "target", "target": "query", "qcov": "tcov", "tcov": "qcov"}
        return _Aligned(
            self.pairs.rename(swap, strict=False).select("query", "target"),
            self.hits.rename(swap).select(mmseqs.FIELDS),
        )


def _search(
    work: Path,
    dbs: tuple[Path, Path],
    names: tuple[dict[str, str], dict[str, str]],
    query_self: dict[str, float],
    label: str,
    params: AlignParams,
    threads: int | None,
    before: _Aligned,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One direction's hits and candidate pairs: one exhaustive pass, or the adaptive fast pass plus
    a sensitive pass for the queries it left without a confident best hit. `dbs` and `names` (MMseqs2
    key to sequence name, from each database's lookup) are the query side's and the target side's."""
    (query, target), (query_names, target_names) = dbs, names
    first = params.fast_sensitivity if params.mode == "adaptive" else params.sensitivity
    done = _pass(work, dbs, names, label, first, params.max_seqs, params, threads, "pass1", before)
    if params.mode != "adaptive":
        return done.hits, done.pairs
    best = (
        _with_self_scores(done.hits, query_self, {})
        .with_columns(bsr=pl.col("bits") / pl.col("self_query"))
        .group_by("query")
        .agg(pl.col("bsr").max())
    )
    settled = set(best.filter(pl.col("bsr") >= params.settle_bsr)["query"].to_list())
    open_keys = [key for key, name in query_names.items() if name not in settled]
    logger.info(
        "%s: %s of %s queries settled by the fast pass (-s %s); %s searched again at -s %s",
        label,
        f"{len(settled):,}",
        f"{len(settled) + len(open_keys):,}",
        params.fast_sensitivity,
        f"{len(open_keys):,}",
        params.sensitivity,
    )
    if not open_keys:
        return done.hits, done.pairs
    # The prefilter's cost grows with its queries' residues (each query position lists its similar
    # k-mers), so when the open queries outnumber the target's sequences (human against a 1,375-
    # protein frog file), the sensitive pass runs from the target's side and its pairs are turned round.
    from_target = len(open_keys) > len(target_names)
    keys = work / f"open_{label}.txt"
    keys.write_text("".join(f"{key}\n" for key in open_keys))
    subset = work / f"open_{query.name}_{target.name}"
    mmseqs.run_mmseqs(
        ["createsubdb", str(keys), str(query), str(subset), "--subdb-mode", "1", "-v", "1"], work, "createsubdb"
    )
    mmseqs.run_mmseqs(
        ["createsubdb", str(keys), f"{query}_h", f"{subset}_h", "--subdb-mode", "1", "-v", "1"], work, "createsubdb"
    )
    again = _pass(
        work,
        (subset, target),  # the subset keeps the query database's keys, so `names` still name them
        names,
        label,
        params.sensitivity,
        params.recheck_max_seqs,
        params,
        threads,
        "pass2",
        before.plus(done),
        from_target=from_target,
    )
    hits = pl.concat([done.hits, again.hits]).unique(["query", "target"], keep="first", maintain_order=True)
    return hits, pl.concat([done.pairs, again.pairs]).unique()


def _pass(
    work: Path,
    dbs: tuple[Path, Path],
    names: tuple[dict[str, str], dict[str, str]],
    label: str,
    sensitivity: float,
    max_seqs: int,
    params: AlignParams,
    threads: int | None,
    name: str,
    before: _Aligned,
    *,
    from_target: bool = False,
) -> _Aligned:
    """Prefilter candidates, Smith–Waterman for those not in `before`; `before`'s hits for the rest.

    `from_target`: the prefilter searches `target`'s sequences against `query`'s (each keeping its
    best `max_seqs`), and the candidate pairs are turned round before they are aligned.
    """
    (query, target), (query_names, target_names) = dbs, names
    prefilter, aligned = (
        work / f"pref_{name}_{query.name}_{target.name}",
        work / f"aln_{name}_{query.name}_{target.name}",
    )
    if params.mode == "all-pairs":
        candidates = mmseqs.every_pair(query_names, target_names)
    else:
        side = " from the target's side" if from_target else ""
        logger.info("%s: candidates (MMseqs2 prefilter, -s %s%s)", label, sensitivity, side)
        searched, searched_in = (target, query) if from_target else (query, target)
        mmseqs.prefilter(
            searched,
            searched_in,
            prefilter,
            work,
            threads,
            sensitivity=sensitivity,
            max_seqs=max_seqs,
            step=f"prefilter {label}",
        )
        if from_target:
            candidates = mmseqs.turned_round(mmseqs.read_candidates(prefilter, work, target_names, query_names))
        else:
            candidates = mmseqs.read_candidates(prefilter, work, query_names, target_names)
    fresh = candidates.join(before.pairs, on=["query", "target"], how="anti", maintain_order="left")
    reused = before.hits.join(candidates, on=["query", "target"], how="semi")
    logger.info(
        "%s: exact Smith–Waterman scores (MMseqs2 align) of %s candidate pairs; %s aligned already",
        label,
        f"{fresh.height:,}",
        f"{candidates.height - fresh.height:,}",
    )
    if fresh.height == 0:
        return _Aligned(candidates.select("query", "target"), reused)
    if fresh.height < candidates.height or from_target or params.mode == "all-pairs":
        prefilter = mmseqs.write_candidates(fresh, prefilter, work)
    mmseqs.align(query, target, prefilter, aligned, work, threads, max_evalue=params.max_evalue, step=f"align {label}")
    hits = mmseqs.read_hits(query, target, aligned, work, threads)
    return _Aligned(candidates.select("query", "target"), pl.concat([hits, reused]))


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
