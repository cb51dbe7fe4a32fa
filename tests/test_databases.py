"""Per-species MMseqs2 search databases and sequence search: built once, reused, right for any length."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.core.logs import DataWarning
from orthovec.indexer.proteome import read_proteome
from orthovec.lookup.homology import align, search
from orthovec.lookup.homology.align import align_all, align_species
from orthovec.lookup.homology.databases import ensure_database, open_database
from orthovec.lookup.homology.search import search_sequences
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, Unavailable
from orthovec.schemas.pairs import read_alignment
from orthovec.schemas.tables import ALIGNMENT, PROTEINS, read_provenance, read_table, write_table
from tests.test_align import _proteins_atlas, slices  # noqa: F401  (the session's protein slices)

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _mutate(sequence: str, share: float, seed: int) -> str:
    rng = random.Random(seed)
    positions = set(rng.sample(range(len(sequence)), int(len(sequence) * share)))
    return "".join(rng.choice(AMINO.replace(c, "")) if i in positions else c for i, c in enumerate(sequence))


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory, slices: dict[str, Path]) -> Atlas:  # noqa: F811
    return _proteins_atlas(tmp_path_factory.mktemp("databases") / "atlas", slices)


def _database_builds(caplog: pytest.LogCaptureFixture) -> int:
    return sum("MMseqs2 search database" in message for message in caplog.messages)


def test_three_species_cost_three_database_builds_and_a_rerun_none(
    atlas: Atlas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(atlas.root, tmp_path / "atlas")
    three = Atlas(tmp_path / "atlas")
    mouse = read_table(three.proteins("mouse"), PROTEINS)
    rat = mouse.set_column(0, "species", pa.array(["rat"] * mouse.num_rows))
    write_table(rat, three.proteins("rat"), PROTEINS, {})
    with caplog.at_level("INFO", logger="orthovec.align"):
        # The default search (every pair aligned, at this size): what is counted is database builds.
        align_all(three, ["human", "mouse", "rat"], threads=1)
    assert _database_builds(caplog) == 3  # N species, not N(N-1)
    for name in ("human", "mouse", "rat"):
        assert len([p for p in three.search_database(name).iterdir() if not p.name.startswith(".")]) == 1
    caplog.clear()
    with caplog.at_level("INFO", logger="orthovec.align"):
        for name in ("human", "mouse"):
            ensure_database(three, name)
    assert _database_builds(caplog) == 0


def test_changed_proteins_get_a_new_database_and_the_old_one_goes(atlas: Atlas, tmp_path: Path) -> None:
    shutil.copytree(atlas.root, tmp_path / "atlas")
    changed = Atlas(tmp_path / "atlas")
    before = ensure_database(changed, "mouse", threads=1)
    mouse = read_table(changed.proteins("mouse"), PROTEINS)
    write_table(mouse.slice(1), changed.proteins("mouse"), PROTEINS, {})
    after = ensure_database(changed, "mouse", threads=1)
    assert after != before and not before.exists()
    assert json.loads((after / "database.json").read_text())["sequences"] == mouse.num_rows - 1


def test_a_killed_build_leaves_no_database_and_the_next_run_sweeps_it(atlas: Atlas, tmp_path: Path) -> None:
    shutil.copytree(atlas.root, tmp_path / "atlas")
    killed = Atlas(tmp_path / "atlas")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = killed.search_database("human") / f".build.{dead.pid}"
    (leftover / "scratch").mkdir(parents=True)
    (leftover / "seqs").write_text("half a database")
    built = ensure_database(killed, "human", threads=1)
    assert not leftover.exists()
    assert sorted(p.name for p in killed.search_database("human").iterdir()) == [built.name]


# --- issue 19 item 6: evidence that is right for any length MMseqs2 accepts ----------------------


@pytest.fixture(scope="module")
def long_atlas(tmp_path_factory: pytest.TempPathFactory, slices: dict[str, Path]) -> Atlas:  # noqa: F811
    """Human slices plus two constructs around one mouse protein B: B inside 800 + 300 foreign
    residues, and B after 7,000 (a protein whose self-alignment passes MMseqs2's 16-bit scores)."""
    atlas = _proteins_atlas(tmp_path_factory.mktemp("long") / "atlas", slices)
    mouse = _frame(read_table(atlas.proteins("mouse"), PROTEINS))
    human = _frame(read_table(atlas.proteins("human"), PROTEINS))
    b = mouse.row(0, named=True)
    filler = "".join(human["sequence"].to_list())
    records = [
        ("sp|FLANKED|FLANKED_TEST OX=1 GN=FLANKED", filler[:800] + b["sequence"] + filler[800:1100]),
        ("sp|HUGE|HUGE_TEST OX=1 GN=HUGE", (filler * 3)[:7000] + b["sequence"]),
    ]
    fasta = atlas.root.parent / "constructs.fasta"
    fasta.write_text("".join(f">{header}\n{sequence}\n" for header, sequence in records))
    proteins, _ = read_proteome(fasta, "constructs")
    write_table(proteins, atlas.proteins("constructs"), PROTEINS, {})
    return atlas


def test_a_protein_mmseqs2_cannot_score_is_set_aside_with_its_reason(long_atlas: Atlas) -> None:
    with pytest.warns(DataWarning, match=r"constructs: 1 protein sequence\(s\) set aside.*HUGE \(7,"):
        database = open_database(long_atlas, "constructs", threads=1)
    [aside] = database.set_aside
    assert aside["proteins"] == ["HUGE"] and "16-bit" in aside["reason"]
    path = align_species(long_atlas, "constructs", "mouse", threads=1)
    assert read_provenance(path)["set_aside"] == {"constructs": ["HUGE"], "mouse": []}
    pairs = _frame(read_table(path, ALIGNMENT))
    assert "HUGE" not in pairs["protein_id_a"].to_list()
    assert pairs["bsr"].max() <= 1.0 and pairs["self_bits_a"].max() < 1e5  # no overflowed self-score


def test_identity_and_coverage_agree_with_the_alignment_of_a_flanked_copy(long_atlas: Atlas) -> None:
    b = _frame(read_table(long_atlas.proteins("mouse"), PROTEINS)).row(0, named=True)
    align_species(long_atlas, "constructs", "mouse", threads=1)  # reuses the table when it is there
    table = read_alignment(long_atlas, "constructs", "mouse")
    assert table is not None
    hit = _frame(table).filter((pl.col("protein_id_a") == "FLANKED") & (pl.col("gene_id_b") == b["gene_id"]))
    row = hit.row(0, named=True)
    # B sits whole inside FLANKED: identical over B, covering all of B and B's share of FLANKED.
    assert row["identity"] == pytest.approx(1.0)
    assert row["coverage_b"] == pytest.approx(1.0)
    assert row["coverage_a"] == pytest.approx(len(b["sequence"]) / (len(b["sequence"]) + 1100), abs=0.01)
    assert row["bsr"] == pytest.approx(row["bits"] / row["self_bits_a"]) and row["bsr"] < 0.9


# --- sequence search -------------------------------------------------------------------------------


def test_identical_and_mutated_queries_find_their_gene_first(atlas: Atlas) -> None:
    mouse = _frame(read_table(atlas.proteins("mouse"), PROTEINS)).head(5)
    queries = [
        *((f"same-{row['protein_id']}", row["sequence"]) for row in mouse.iter_rows(named=True)),
        *(
            (f"mut-{row['protein_id']}", _mutate(row["sequence"], 0.1, i))
            for i, row in enumerate(mouse.iter_rows(named=True))
        ),
    ]
    hits = _frame(search_sequences(atlas, queries, "mouse", threads=1, max_genes=3))
    best = hits.filter(pl.col("rank") == 1).sort("query_index")
    expected = mouse["gene_id"].to_list() * 2
    assert best["gene_id"].to_list() == expected
    same = best.head(5)
    assert (same["identity"] == 1.0).all() and (same["bsr"] >= 0.99).all() and (same["coverage_query"] == 1.0).all()
    assert (best.tail(5)["identity"] < 0.95).all()  # the mutated copies are found as what they are
    assert hits["query"].to_list()[0] == queries[0][0] and (hits["rank"] <= 3).all()


def test_the_k_mer_index_search_gives_rows_the_every_pair_search_holds_with_the_same_scores(
    atlas: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small search aligns every query with every protein and builds no index; past
    `ALL_PAIRS_CELLS` the species' k-mer index is built and its prefilter chooses the candidates.
    On the same queries, every row the index gives is a row of the every-pair search, scored the same."""
    shutil.copytree(atlas.root, tmp_path / "atlas")
    copy = Atlas(tmp_path / "atlas")
    mouse = _frame(read_table(copy.proteins("mouse"), PROTEINS)).head(8)
    queries = [
        (row["protein_id"], _mutate(row["sequence"], 0.3, i)) for i, row in enumerate(mouse.iter_rows(named=True))
    ]
    every = _frame(search_sequences(copy, queries, "mouse", threads=1))
    assert open_database(copy, "mouse").index is None
    monkeypatch.setattr(search, "ALL_PAIRS_CELLS", 0)
    indexed = _frame(search_sequences(copy, queries, "mouse", threads=1))
    assert open_database(copy, "mouse").index is not None
    both = indexed.join(every, on=["query_index", "gene_id"], how="left", suffix="_every")
    assert both.height >= len(queries) and both["bits_every"].null_count() == 0
    for column in ("protein_id", "bits", "evalue", "identity", "coverage_query", "coverage_target", "bsr"):
        assert (both[column] == both[f"{column}_every"]).all(), column
    first = every.filter(pl.col("rank") == 1).sort("query_index")["gene_id"].to_list()
    assert first == mouse["gene_id"].to_list()


def test_a_human_protein_mutated_at_ten_percent_finds_its_mouse_ortholog(atlas: Atlas) -> None:
    human = _frame(read_table(atlas.proteins("human"), PROTEINS))
    mouse = _frame(read_table(atlas.proteins("mouse"), PROTEINS))
    symbols = set(mouse["gene_symbol"].str.to_uppercase().to_list())
    shared = human.filter(pl.col("gene_symbol").str.to_uppercase().is_in(symbols)).head(10)
    queries = [
        (row["protein_id"], _mutate(row["sequence"], 0.1, i)) for i, row in enumerate(shared.iter_rows(named=True))
    ]
    best = _frame(search_sequences(atlas, queries, "mouse", threads=1, max_genes=1))
    found = dict(zip(best["query"].to_list(), best["gene_symbol"].str.to_uppercase().to_list(), strict=True))
    right = sum(found.get(row["protein_id"]) == row["gene_symbol"].upper() for row in shared.iter_rows(named=True))
    assert right >= 9


def test_a_query_that_is_not_a_protein_is_refused_by_name(atlas: Atlas) -> None:
    with pytest.raises(Invalid, match=r"query 'bad one': expected a protein sequence"):
        search_sequences(atlas, [("ok", "MKTAYIAKQR"), ("bad one", "MKT-12")], "mouse")
    with pytest.raises(Invalid, match="sensitivity"):
        search_sequences(atlas, [("ok", "MKTAYIAKQR")], "mouse", sensitivity=float("nan"))


# --- issue 19 items 10, 12, 13: settings checked, disks that refuse writes ------------------------


@pytest.mark.parametrize("value", ["100", "nan", "0"])
def test_align_refuses_a_sensitivity_outside_mmseqs2s_range(atlas: Atlas, value: str) -> None:
    result = CliRunner().invoke(main, ["align", "human", "mouse", "--sensitivity", value, "--atlas", str(atlas.root)])
    assert result.exit_code == 2 and "--sensitivity" in result.output and "7.5" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(Invalid, match=r"sensitivity=.*1 and <= 7.5"):
        align_species(atlas, "human", "mouse", sensitivity=float(value))


@pytest.fixture
def read_only(atlas: Atlas, tmp_path: Path) -> Iterator[Atlas]:
    source = tmp_path / "source"
    shutil.copytree(atlas.root, source)
    shutil.rmtree(source / "alignments", ignore_errors=True)
    view = tmp_path / "read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a read-only bind mount (root): {mounted.stderr.decode().strip()}")
    try:
        yield Atlas(view)
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_align_on_a_read_only_atlas_says_so(read_only: Atlas) -> None:
    result = CliRunner().invoke(main, ["align", "human", "mouse", "--threads", "1", "--atlas", str(read_only.root)])
    assert result.exit_code == 2 and "read-only" in result.output and "Traceback" not in result.output


@pytest.fixture
def full_disk(atlas: Atlas, tmp_path: Path) -> Iterator[Atlas]:
    """The slices' proteins on a 2 MB tmpfs, filled to the last byte."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
    try:
        for name in ("human", "mouse"):
            (disk / "atlas" / "species" / name).mkdir(parents=True)
            shutil.copy(atlas.proteins(name), disk / "atlas" / "species" / name / "proteins.parquet")
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        yield Atlas(disk / "atlas")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_align_on_a_full_disk_is_the_one_disk_message(full_disk: Atlas) -> None:
    result = CliRunner().invoke(main, ["align", "human", "mouse", "--threads", "1", "--atlas", str(full_disk.root)])
    assert result.exit_code == 2 and "the disk is full" in result.output and "Traceback" not in result.output
    with pytest.raises(Unavailable, match="disk is full"):
        ensure_database(full_disk, "human")


# --- issue 20 item 1: the adaptive search --------------------------------------------------------


def test_the_adaptive_search_finds_the_exhaustive_searchs_best_partners_and_says_which_ran(
    atlas: Atlas, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A human gene with no mouse partner gets one: a copy with half its residues substituted, which
    the fast pass (-s 1) misses (with the second pass disabled this test fails). Left unsettled, the
    gene is searched again at 5.7 and its partner found; every human gene's best partner is the one
    the exhaustive search gives."""
    shutil.copytree(atlas.root, tmp_path / "atlas")
    planted = Atlas(tmp_path / "atlas")
    human = _frame(read_table(planted.proteins("human"), PROTEINS))
    mouse = _frame(read_table(planted.proteins("mouse"), PROTEINS))
    partnered = set(mouse["gene_symbol"].str.to_uppercase().to_list())
    lonely = human.filter(~pl.col("gene_symbol").str.to_uppercase().is_in(partnered)).row(0, named=True)
    fasta = tmp_path / "diverged.fasta"
    fasta.write_text(f">sp|DIVERGED|DIVERGED_MOUSE OX=10090 GN=Diverged\n{_mutate(lonely['sequence'], 0.5, 7)}\n")
    diverged, _ = read_proteome(fasta, "mouse")
    both = read_table(planted.proteins("mouse"), PROTEINS)
    write_table(pa.concat_tables([both, diverged.cast(both.schema)]), planted.proteins("mouse"), PROTEINS, {})

    monkeypatch.setattr(align, "for_size", lambda params, proteins: params)  # adaptive at any size
    with caplog.at_level("INFO", logger="orthovec.align"):
        adaptive = _frame(read_table(align_species(planted, "human", "mouse", threads=1), ALIGNMENT))
    settle = read_provenance(planted.alignment("human", "mouse"))
    assert (settle["mode"], settle["fast_sensitivity"], settle["sensitivity"]) == ("adaptive", 1.0, 5.7)
    searched_again = [m for m in caplog.messages if "searched again at -s 5.7" in m]
    assert len(searched_again) == 2 and not any(m.endswith("; 0 searched again at -s 5.7") for m in searched_again)
    found = adaptive.filter(pl.col("gene_id_a") == lonely["gene_id"]).sort("bits", descending=True)
    assert found.height, "the diverged partner was not found"
    assert found["gene_symbol_b"][0] == "Diverged"

    exhaustive_path = align_species(planted, "human", "mouse", threads=1, sensitivity=5.7)
    assert read_provenance(exhaustive_path)["mode"] == "exhaustive"
    exhaustive = _frame(read_table(exhaustive_path, ALIGNMENT))

    def best(pairs: pl.DataFrame) -> dict[str, str]:
        top = pairs.sort(["bits", "gene_id_b"], descending=[True, False]).unique("gene_id_a", keep="first")
        return dict(zip(top["gene_id_a"].to_list(), top["gene_id_b"].to_list(), strict=True))

    assert best(adaptive) == best(exhaustive)
