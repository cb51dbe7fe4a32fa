"""Alignment evidence: MMseqs2 on real sequences, gene reduction, resumability, fused mapping tables."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from Bio.SeqIO.FastaIO import SimpleFastaParser
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.indexer.proteome import read_proteome
from orthovec.lookup.homology import align as align_module
from orthovec.lookup.homology import mmseqs
from orthovec.lookup.homology.align import AlignParams, align_species, search_both_ways
from orthovec.lookup.homology.databases import open_database
from orthovec.lookup.homology.graph import near_best
from orthovec.lookup.homology.mapping import MappingParams, build_mapping, map_species
from orthovec.lookup.homology.mmseqs import run_mmseqs
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.pairs import read_alignment
from orthovec.schemas.tables import (
    ALIGNMENT,
    GENES,
    MAPPING,
    PROTEINS,
    genes_table,
    read_provenance,
    read_table,
    write_table,
)
from tests.conftest import shared_file

PLANTED = 40  # human–mouse pairs sharing a symbol
UNRELATED = 10  # genes per species with no partner by symbol
MODEL = "esm2_t6_8M_UR50D"


def _records(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt") as handle:
        return list(SimpleFastaParser(handle))


def _symbol(header: str) -> str:
    return next(part[3:] for part in header.split() if part.startswith("GN=")).upper()


@pytest.fixture(scope="session")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """40 human proteins whose symbol has a mouse protein, those mouse proteins, 10 unrelated of each,
    and one human gene with a second, half-length isoform."""
    human = [r for r in _records(shared_file("proteomes/human_sprot2014.fasta.gz")) if " GN=" in r[0]]
    mouse = [r for r in _records(shared_file("proteomes/mouse_sprot2014.fasta.gz")) if " GN=" in r[0]]
    mouse_by_symbol = {_symbol(h): (h, s) for h, s in mouse}
    paired = [r for r in human if _symbol(r[0]) in mouse_by_symbol and 100 <= len(r[1]) <= 600][:PLANTED]
    symbols = {_symbol(h) for h, _ in paired}
    lonely_human = [r for r in human if _symbol(r[0]) not in mouse_by_symbol][:UNRELATED]
    human_symbols = {_symbol(h) for h, _ in human}
    lonely_mouse = [r for r in mouse if _symbol(r[0]) not in human_symbols]
    header, sequence = paired[0]
    accession = header.split("|")[1]
    isoform = (header.replace(accession, "ISO1", 2), sequence[: len(sequence) // 2])
    folder = tmp_path_factory.mktemp("slices")
    files = {
        "human": [*paired, isoform, *lonely_human],
        "mouse": [mouse_by_symbol[s] for s in sorted(symbols)] + lonely_mouse[:UNRELATED],
    }
    paths = {}
    for name, records in files.items():
        paths[name] = folder / f"{name}.fasta"
        paths[name].write_text("".join(f">{h}\n{s}\n" for h, s in records))
    return paths


def _proteins_atlas(root: Path, slices: dict[str, Path]) -> Atlas:
    atlas = Atlas(root)
    for name, path in slices.items():
        proteins, _ = read_proteome(path, name)
        write_table(proteins, atlas.proteins(name), PROTEINS, {"source": str(path)})
    return atlas


@pytest.fixture(scope="session")
def aligned(tmp_path_factory: pytest.TempPathFactory, slices: dict[str, Path]) -> Atlas:
    atlas = _proteins_atlas(tmp_path_factory.mktemp("aligned") / "atlas", slices)
    align_species(atlas, "human", "mouse", threads=2)
    return atlas


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_alignment_finds_each_ortholog_as_best_gene_pair_from_its_best_isoform(aligned: Atlas) -> None:
    pairs = _frame(read_table(aligned.alignment("human", "mouse"), ALIGNMENT))
    assert pairs.select("gene_id_a", "gene_id_b").is_unique().all()  # one row per gene pair
    best = pairs.sort("bits", descending=True).unique("gene_id_a", keep="first")
    same = best.filter(pl.col("gene_symbol_a").str.to_uppercase() == pl.col("gene_symbol_b").str.to_uppercase())
    assert same.height >= PLANTED - 1
    assert pairs["bsr"].min() > 0 and pairs["bsr"].max() <= 1.0
    assert ((pairs["identity"] >= 0) & (pairs["identity"] <= 1) & (pairs["coverage_a"] <= 1)).all()
    # The gene with a half-length isoform is represented by its full-length protein.
    proteins = _frame(read_table(aligned.proteins("human"), PROTEINS))
    gene = proteins.filter(pl.col("protein_id") == "ISO1")["gene_id"][0]
    assert proteins.filter(pl.col("gene_id") == gene).height == 2
    top = best.filter(pl.col("gene_id_a") == gene).row(0, named=True)
    assert top["protein_id_a"] != "ISO1" and top["coverage_a"] > 0.9


def test_a_rerun_with_unchanged_proteins_reuses_the_table(aligned: Atlas, caplog: pytest.LogCaptureFixture) -> None:
    path = aligned.alignment("human", "mouse")
    # ~50 proteins a side: every pair aligned, cheaper than any prefilter, and the provenance says so
    ran = read_provenance(path)
    assert (ran["mode"], ran["all_pairs_cells"], ran["all_pairs_max"]) == ("all-pairs", 2 * 10**10, 10**6)
    before = path.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="orthovec.align"):
        assert align_species(aligned, "human", "mouse", threads=1) == path
    assert path.stat().st_mtime_ns == before and "up to date" in caplog.messages[-1]
    flipped = read_alignment(aligned, "mouse", "human")
    assert flipped is not None and flipped.column("species_a")[0].as_py() == "mouse"


def test_sigkill_mid_alignment_leaves_no_table_and_a_rerun_gives_the_same_one(
    aligned: Atlas, slices: dict[str, Path], tmp_path: Path
) -> None:
    atlas = _proteins_atlas(tmp_path / "atlas", slices)
    command = [sys.executable, "-m", "orthovec.cli", "align", "human", "mouse", "--threads", "1"]
    process = subprocess.Popen([*command, "--atlas", str(atlas.root)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if "Smith–Waterman" in line:  # MMseqs2 is scoring A→B now
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not atlas.alignment("human", "mouse").exists()
    assert list(atlas.alignment("human", "mouse").parent.glob(".human__mouse.mmseqs.*"))  # the killed run's work

    align_species(atlas, "human", "mouse", threads=1)
    rerun = read_table(atlas.alignment("human", "mouse"), ALIGNMENT)
    reference = read_table(aligned.alignment("human", "mouse"), ALIGNMENT)
    assert rerun.replace_schema_metadata(None).equals(reference.replace_schema_metadata(None))
    assert not list(atlas.alignment("human", "mouse").parent.glob(".human__mouse.mmseqs.*"))


def test_alignment_only_mapping_needs_no_gene_vectors(aligned: Atlas, tmp_path: Path) -> None:
    summary = map_species(aligned, ["human", "mouse"], out=tmp_path / "map.parquet")[0]
    assert summary.evidence == "alignment"  # auto: the only evidence there is
    table = _frame(read_table(tmp_path / "map.parquet", MAPPING))
    called = table.filter(pl.col("is_one2one_greedy"))
    same = called.filter(pl.col("gene_symbol_a").str.to_uppercase() == pl.col("gene_symbol_b").str.to_uppercase())
    assert same.height >= PLANTED - 1 and called.height - same.height <= 2
    assert table["alignment_bsr"].null_count() == 0 and (table["score"] == table["alignment_bsr"]).all()
    assert "embedding_score" not in table.columns


def _with_vectors(aligned: Atlas, root: Path, plant: tuple[str, str] | None = None) -> Atlas:
    """A copy of the aligned atlas plus random 64-d gene vectors (one planted embedding-only pair)."""
    shutil.copytree(aligned.root, root)
    atlas = Atlas(root)
    rng = np.random.default_rng(5)
    genes = {}
    for name in ("human", "mouse"):
        proteins = _frame(read_table(atlas.proteins(name), PROTEINS)).unique("gene_id", keep="first").sort("gene_id")
        genes[name] = (proteins["gene_id"].to_list(), proteins["gene_symbol"].to_list())
    vectors = {name: rng.normal(size=(len(ids), 64)).astype(np.float32) for name, (ids, _) in genes.items()}
    if plant:
        human_gene, mouse_gene = plant
        vectors["human"][genes["human"][0].index(human_gene)] = vectors["mouse"][genes["mouse"][0].index(mouse_gene)]
    for name, (ids, symbols) in genes.items():
        table = genes_table(name, ids, vectors[name], gene_symbols=symbols)
        write_table(table, atlas.genes(name, MODEL), GENES, {"model": MODEL})
    return atlas


def test_fused_keeps_every_alignment_call_and_lets_the_embedding_fill_in_unaligned_genes(
    aligned: Atlas, tmp_path: Path
) -> None:
    alignment = _frame(read_table(aligned.alignment("human", "mouse"), ALIGNMENT))
    proteins = {n: _frame(read_table(aligned.proteins(n), PROTEINS)) for n in ("human", "mouse")}
    lonely_human = sorted(set(proteins["human"]["gene_id"]) - set(alignment["gene_id_a"]))[0]
    lonely_mouse = sorted(set(proteins["mouse"]["gene_id"]) - set(alignment["gene_id_b"]))[0]
    atlas = _with_vectors(aligned, tmp_path / "atlas", plant=(lonely_human, lonely_mouse))

    summary = map_species(atlas, ["human", "mouse"])[0]
    assert summary.evidence == "fused" and Path(summary.path) == atlas.mapping(MODEL, "human", "mouse")
    fused = _frame(read_table(Path(summary.path), MAPPING))
    only_embedding = fused.filter(pl.col("evidence") == "embedding")
    aligned_rows = fused.filter(pl.col("evidence") != "embedding")
    assert only_embedding.height and aligned_rows.height
    alignment_columns = [c for c in fused.columns if c.startswith("alignment_")]
    assert all(only_embedding[c].null_count() == only_embedding.height for c in alignment_columns)  # null, not 0
    assert all(aligned_rows[c].null_count() == 0 for c in alignment_columns)
    assert fused["embedding_score"].null_count() == 0
    assert np.allclose(aligned_rows["fused_score"], 1 + aligned_rows["alignment_bsr"])
    assert (fused["score"] == fused["fused_score"]).all()

    map_species(atlas, ["human", "mouse"], params=MappingParams(evidence="alignment"), out=tmp_path / "a.parquet")
    alignment_only = _frame(read_table(tmp_path / "a.parquet", MAPPING))
    assert _calls(fused) == _calls(alignment_only) | {(lonely_human, lonely_mouse)}  # random vectors add only the plant
    optimal = "is_one2one_optimal"  # aligned pairs are matched first, so no aligned call is traded away
    assert _calls(fused, optimal) == _calls(alignment_only, optimal) | {(lonely_human, lonely_mouse)}
    planted = fused.filter((pl.col("gene_id_a") == lonely_human) & (pl.col("gene_id_b") == lonely_mouse))
    assert planted["evidence"].to_list() == ["embedding"]


def _calls(table: pl.DataFrame, column: str = "is_one2one_greedy") -> set[tuple[str, str]]:
    called = table.filter(pl.col(column))
    return set(zip(called["gene_id_a"].to_list(), called["gene_id_b"].to_list(), strict=True))


def test_evidence_that_is_missing_is_named_with_the_command_that_makes_it(aligned: Atlas, tmp_path: Path) -> None:
    runner = CliRunner()
    fused = runner.invoke(main, ["map", "human", "mouse", "--evidence", "fused", "--atlas", str(aligned.root)])
    assert fused.exit_code == 2 and "needs gene vectors" in fused.output and "Traceback" not in fused.output
    bare = _proteins_atlas(tmp_path / "bare", {})
    shutil.copytree(aligned.root / "species", bare.root / "species")
    no_alignment = runner.invoke(main, ["map", "human", "mouse", "--evidence", "alignment", "--atlas", str(bare.root)])
    assert no_alignment.exit_code == 2 and "run `orthovec align human mouse` first" in no_alignment.output
    unknown = runner.invoke(main, ["align", "human", "yeast", "--atlas", str(aligned.root)])
    assert unknown.exit_code == 2 and "Unknown species 'yeast'" in unknown.output and "orthovec index" in unknown.output
    (bare.root / "species" / "yeast" / "genes").mkdir(parents=True)  # a species without its proteins table
    held = runner.invoke(main, ["align", "human", "yeast", "--atlas", str(bare.root)])
    assert held.exit_code == 2 and "yeast in" in held.output and "has no proteins table" in held.output
    assert "Unknown species" not in held.output


def test_an_alignment_of_older_proteins_is_refused(aligned: Atlas, tmp_path: Path) -> None:
    shutil.copytree(aligned.root, tmp_path / "atlas")
    atlas = Atlas(tmp_path / "atlas")
    mouse = read_table(atlas.proteins("mouse"), PROTEINS)
    write_table(mouse.slice(1), atlas.proteins("mouse"), PROTEINS, {})
    with pytest.raises(UserError, match=r"other mouse proteins.*orthovec align human mouse"):
        map_species(atlas, ["human", "mouse"], params=MappingParams(evidence="alignment"))


def test_an_mmseqs2_failure_is_a_user_error_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"MMseqs2 failed during prefilter[\s\S]*missing_a does not exist"):
        run_mmseqs(["prefilter", "missing_a", "missing_b", "out"], tmp_path, "prefilter")


def test_csls_scores_equal_a_by_hand_computation() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(30, 16)), rng.normal(size=(45, 16))
    a[:5] += 3 * b[0]  # b0 is a hub: close to five A genes
    table = build_mapping(
        genes_table("A", [f"a{i}" for i in range(30)], a.astype(np.float32)),
        genes_table("B", [f"b{i}" for i in range(45)], b.astype(np.float32)),
        MappingParams(k=4, metric="csls", csls_k=3),
        MODEL,
    )
    unit_a = a / np.linalg.norm(a, axis=1, keepdims=True)
    unit_b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cosine = unit_a @ unit_b.T
    r_a = np.sort(cosine, axis=1)[:, -3:].mean(axis=1)
    r_b = np.sort(cosine, axis=0)[-3:, :].mean(axis=0)
    csls = 2 * cosine - r_a[:, None] - r_b[None, :]
    rows = _frame(table)
    i = rows["gene_id_a"].str.strip_prefix("a").cast(pl.Int64).to_numpy()
    j = rows["gene_id_b"].str.strip_prefix("b").cast(pl.Int64).to_numpy()
    np.testing.assert_allclose(rows["score"].to_numpy(), csls[i, j], atol=1e-5)
    top1 = rows.filter(pl.col("rank_ab") == 1)
    np.testing.assert_array_equal(
        top1.sort("gene_id_a")["gene_id_b"].to_list(),
        [f"b{c}" for c in np.argmax(csls, axis=1)[np.argsort([f"a{x}" for x in range(30)])]],
    )


def test_the_homology_graph_rule_does_not_depend_on_the_score_scale() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 30, 400), rng.integers(0, 30, 400)
    keys = np.unique(a * 30 + b)
    a, b = keys // 30, keys % 30
    scores = rng.uniform(0.5, 1.0, len(a))
    background_a, background_b = rng.uniform(0.0, 0.4, 30)[a], rng.uniform(0.0, 0.4, 30)[b]
    kept = near_best(a, b, scores, background_a, background_b, 0.1)
    # A model whose cosines crowd near 1 (scale 0.01) or a metric with another origin: same graph.
    for scale, shift in ((0.01, 0.99), (7.0, -3.0)):
        moved = near_best(a, b, scale * scores + shift, scale * background_a + shift, scale * background_b + shift, 0.1)
        np.testing.assert_array_equal(moved, kept)
    assert 0 < kept.sum() < len(a)


def test_unrelated_genes_are_candidates_but_not_one_to_one_calls() -> None:
    """Issue 11 item 8: 300 × 1,375 genes with nothing in common; greedy alone pairs all 300."""
    rng = np.random.default_rng(8)
    human = rng.normal(size=(300, 64)).astype(np.float32)
    frog = rng.normal(size=(1375, 64)).astype(np.float32)
    frog[:20] = human[:20] + rng.normal(scale=0.1, size=(20, 64))  # 20 planted orthologs
    table = _frame(
        build_mapping(
            genes_table("human", [f"h{i}" for i in range(300)], human),
            genes_table("frog", [f"f{i}" for i in range(1375)], frog),
            MappingParams(),
            MODEL,
        )
    )
    called = table.filter(pl.col("is_one2one_greedy"))
    assert _calls(called) >= {(f"h{i}", f"f{i}") for i in range(20)}
    assert called.height <= 22  # chance pairs stay uncalled (E-value above the floor)
    assert table.filter(pl.col("rank_ab") == 1).height == 300  # ...but every gene keeps its candidates
    assert table.filter(pl.col("is_one2one_optimal")).height <= 22


def test_align_works_with_a_relative_atlas_path(
    aligned: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MMseqs2 runs inside its work directory, so every path handed to it must not depend on the caller's."""
    shutil.copytree(aligned.root / "species", tmp_path / "atlas" / "species")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["align", "human", "mouse", "--threads", "1", "--atlas", "atlas"])
    assert result.exit_code == 0, result.output
    assert read_table(Path("atlas/alignments/human__mouse.parquet"), ALIGNMENT).num_rows > PLANTED


def test_every_pair_aligned_finds_every_hit_the_prefilter_passes_with_the_same_scores(
    aligned: Atlas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Small proteomes skip the prefilter and align every pair: a superset of the exhaustive search's
    hits, each scored the same (A→B: both are Smith–Waterman of the same pair with A as query)."""
    databases = {name: open_database(aligned, name, threads=1) for name in ("human", "mouse")}
    searched = {}
    for mode in ("all-pairs", "exhaustive"):
        (tmp_path / mode).mkdir()
        params = AlignParams(mode=mode)  # type: ignore[arg-type]
        with caplog.at_level("INFO", logger="orthovec.align"):
            hits = search_both_ways(tmp_path / mode, databases["human"], databases["mouse"], params, 1)
        searched[mode] = hits.filter(pl.col("direction") == "ab")
        if mode == "all-pairs":
            pairs = len(mmseqs.lookup(databases["human"].db)) * len(mmseqs.lookup(databases["mouse"].db))
            assert f"A→B: exact Smith–Waterman scores (MMseqs2 align) of {pairs:,} candidate pairs" in caplog.text
            assert (
                f"B→A: exact Smith–Waterman scores (MMseqs2 align) of 0 candidate pairs; {pairs:,} aligned"
                in caplog.text
            )
            assert "prefilter" not in caplog.text
    every, prefiltered = searched["all-pairs"], searched["exhaustive"]
    both = prefiltered.join(every, on=["query", "target"], how="left", suffix="_every")
    assert both.height == prefiltered.height > PLANTED and both["bits_every"].null_count() == 0
    for column in ("bits", "raw", "evalue", "fident", "qcov", "tcov"):
        assert (both[column] == both[f"{column}_every"]).all(), column
    assert every.height >= prefiltered.height


def test_a_pair_both_prefilters_propose_is_aligned_once_and_read_from_either_side(
    aligned: Atlas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """B→A takes A→B's alignment of a pair both searches propose, transposed. Against a B→A search
    of its own, the pairs are the same (bar those A→B rejected), and so are both coverages and,
    within MMseqs2's query-side composition correction, the bits; a transposition that forgot to
    swap the coverages fails on the pairs of unequal coverage (the half-length isoform's)."""
    databases = {name: open_database(aligned, name, threads=1) for name in ("human", "mouse")}
    with caplog.at_level("INFO", logger="orthovec.align"):
        hits = search_both_ways(tmp_path, databases["human"], databases["mouse"], AlignParams(mode="exhaustive"), 1)
    reused = [m for m in caplog.messages if m.startswith("B→A: exact Smith–Waterman")]
    assert len(reused) == 1 and not reused[0].endswith("; 0 aligned already")

    human, mouse = databases["human"].db, databases["mouse"].db
    mmseqs.prefilter(mouse, human, tmp_path / "pref", tmp_path, 1, sensitivity=5.7, max_seqs=300, step="prefilter")
    mmseqs.align(mouse, human, tmp_path / "pref", tmp_path / "aln", tmp_path, 1, max_evalue=1e-3, step="align")
    fresh = mmseqs.read_hits(mouse, human, tmp_path / "aln", tmp_path, 1)
    forward = hits.filter(pl.col("direction") == "ab")
    backward = hits.filter(pl.col("direction") == "ba")
    rejected_forward = fresh.join(
        forward.rename({"query": "target", "target": "query"}), on=["query", "target"], how="anti"
    )
    assert backward.height == fresh.height - rejected_forward.height and backward.height > PLANTED
    both = backward.join(fresh, on=["query", "target"], suffix="_fresh")
    assert both.height == backward.height
    for column in ("qcov", "tcov"):
        near = (both[column] - both[f"{column}_fresh"]).abs() <= 0.01
        assert near.mean() >= 0.9  # type: ignore[operator]
    lopsided = both.filter((pl.col("qcov_fresh") - pl.col("tcov_fresh")).abs() > 0.3)
    assert lopsided.height and ((lopsided["qcov"] - lopsided["qcov_fresh"]).abs() < 0.1).all()
    assert ((both["bits"] - both["bits_fresh"]).abs() <= 10 + 0.05 * both["bits_fresh"]).all()


def test_a_sensitive_pass_with_more_open_queries_than_targets_runs_from_the_targets_side(
    aligned: Atlas, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against 5 of the mouse proteins most human queries stay unsettled, so the second pass searches
    the 5 mouse proteins against them and turns the pairs round. Each human gene's best partner
    among the 5 is the one the search against every mouse protein found, with the same bits,
    identity and coverages (a pair turned round the wrong way is scored on other sequences)."""
    shutil.copytree(aligned.root / "species", tmp_path / "atlas" / "species")  # human's database comes along
    atlas = Atlas(tmp_path / "atlas")
    mouse = read_table(atlas.proteins("mouse"), PROTEINS)
    write_table(mouse.slice(0, 5), atlas.proteins("mouse"), PROTEINS, {})
    monkeypatch.setattr(align_module, "for_size", lambda params, proteins: params)  # adaptive at any size
    with caplog.at_level("INFO", logger="orthovec.align"):
        few = _frame(read_table(align_species(atlas, "human", "mouse", threads=1), ALIGNMENT))
    assert any(
        m.startswith("A→B: candidates (MMseqs2 prefilter, -s 5.7 from the target's side)") for m in caplog.messages
    )
    every = _frame(read_table(aligned.alignment("human", "mouse"), ALIGNMENT))
    five = set(mouse.column("gene_id").to_pylist()[:5])
    columns = ["gene_id_a", "gene_id_b", "protein_id_a", "protein_id_b", "bits", "identity", "coverage_a", "coverage_b"]

    def best(pairs: pl.DataFrame) -> pl.DataFrame:
        among = pairs.filter(pl.col("gene_id_b").is_in(five))
        return among.sort(["bits", "gene_id_b"], descending=[True, False]).unique("gene_id_a", keep="first")

    mutual = best(few).join(best(every).select("gene_id_a", "gene_id_b"), on=["gene_id_a", "gene_id_b"])
    assert mutual.height >= 5
    assert (
        mutual.select(columns)
        .sort("gene_id_a")
        .equals(
            every.join(mutual.select("gene_id_a", "gene_id_b"), on=["gene_id_a", "gene_id_b"])
            .select(columns)
            .sort("gene_id_a")
        )
    )
