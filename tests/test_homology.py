"""Importing external homology, the published strategies, and evaluation against Ensembl."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.lookup.homology.evaluate import evaluate
from orthovec.lookup.homology.imported import import_biomart, import_homology, import_pairs
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import MAPPING, read_table
from tests.conftest import shared_file


def _frame(table) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return pl.from_arrow(table)


def test_biomart_export_with_stable_ids_keeps_confidence_and_counts_one2one() -> None:
    rows = _frame(import_biomart(shared_file("orthologs/human_mouse_ensembl_biomart.csv.gz"), "human", "mouse"))
    assert rows.filter(pl.col("relation") == "one2one").height == 17_122
    first = rows.row(0, named=True)
    assert first["gene_id_a"].startswith("ENSG") and first["gene_id_b"].startswith("ENSMUSG")
    assert rows["orthology_confidence"].drop_nulls().unique().sort().to_list() == [0, 1]
    assert set(rows["source"].unique()) == {"ensembl"}


def test_biomart_export_with_identities_scores_pairs_by_mean_identity() -> None:
    rows = _frame(import_biomart(shared_file("reference/seed_human_mouse_ENS_M2M.tsv.gz"), "human", "mouse"))
    row = rows.filter(pl.col("perc_id_ab").is_not_null()).row(0, named=True)
    assert row["score"] == pytest.approx((row["perc_id_ab"] + row["perc_id_ba"]) / 200, rel=1e-5)
    assert set(rows["relation"].unique()) == {"one2one", "one2many", "many2one", "many2many"}
    _assert_one2many_sides_follow_the_pairs(rows)
    # Ensembl labels both directions `ortholog_one2many`: two human genes share mouse Tekt4 (many2one).
    tekt4 = rows.filter(pl.col("gene_symbol_b") == "Tekt4")
    assert set(tekt4["gene_symbol_a"]) == {"MAFIP", "TEKT4"} and set(tekt4["relation"]) == {"many2one"}
    # Every gene of a one2many group shares the group id of its partner.
    multi = rows.filter(pl.col("relation") == "one2many")
    assert multi.group_by("gene_id_a").agg(pl.col("group_id").n_unique())["group_id"].max() == 1


def _assert_one2many_sides_follow_the_pairs(rows: pl.DataFrame) -> None:
    """many2one: a B gene with several A partners; one2many never where the pairs show that shape.

    Partners are counted among Ensembl's `ortholog_one2many` pairs; a row whose partners the export
    left out stays one2many, Ensembl's own label."""
    rows = rows.filter(pl.col("homology_type") == "ortholog_one2many")
    partners_a = rows.group_by("gene_id_a").len().rename({"len": "partners_a"})
    partners_b = rows.group_by("gene_id_b").len().rename({"len": "partners_b"})
    both = rows.join(partners_a, on="gene_id_a").join(partners_b, on="gene_id_b")
    many2one = both.filter(pl.col("relation") == "many2one")
    assert many2one.height and ((many2one["partners_b"] > 1) & (many2one["partners_a"] == 1)).all()
    one2many = both.filter(pl.col("relation") == "one2many")
    assert one2many.height and not ((one2many["partners_a"] == 1) & (one2many["partners_b"] > 1)).any()


def test_an_export_made_from_the_other_species_is_oriented_by_from_and_to() -> None:
    rows = _frame(import_biomart(shared_file("scrna/baron_human2mouse_ensembl.csv.gz"), "human", "mouse"))
    assert rows.row(0, named=True)["gene_symbol_a"] == "MT-ND1"  # human on the A side
    counts = dict(rows["relation"].value_counts().iter_rows())
    assert counts["one2one"] == 16_621
    assert counts["one2many"] and counts["many2one"]  # Ensembl's one2many label names neither side
    _assert_one2many_sides_follow_the_pairs(rows)


def test_published_esm2_15b_mapping_reproduces_its_precision_against_ensembl() -> None:
    predicted = import_homology(
        shared_file("reference/seed_human_mouse_LM_O2O_esm2_15B.csv.gz"), "human", "mouse", "pairs"
    )
    truth = import_biomart(shared_file("reference/seed_human_mouse_ENS_M2M.tsv.gz"), "human", "mouse")
    result = evaluate(predicted, truth)
    assert result.n_pairs == 16_119
    assert result.precision == pytest.approx(0.884, abs=0.0005)
    assert result.recall == pytest.approx(0.73, abs=0.005)
    assert result.matched_by == "gene_id"


def test_strategies_reduce_ensembl_to_one_to_one_pairs() -> None:
    path = shared_file("reference/seed_human_mouse_ENS_M2M.tsv.gz")
    every = _frame(import_homology(path, "human", "mouse", "biomart", "all"))
    strict = _frame(import_homology(path, "human", "mouse", "biomart", "one2one"))
    greedy = _frame(import_homology(path, "human", "mouse", "biomart", "hc-greedy"))
    assert strict.height == every.filter(pl.col("relation") == "one2one").height
    for table in (greedy,):
        assert table["gene_id_a"].is_unique().all() and table["gene_id_b"].is_unique().all()
    assert greedy.height > strict.height  # paralog families contribute their best pair


def test_fused_strategy_uses_the_embedding_score_of_the_same_pairs(tmp_path: Path) -> None:
    ensembl = tmp_path / "ens.tsv"
    ensembl.write_text(
        "Gene name\tMouse gene name\tMouse homology type\t%id. target Mouse gene identical to query gene\t"
        "%id. query gene identical to target Mouse gene\tMouse orthology confidence [0 low, 1 high]\n"
        "A1\tA1a\tortholog_one2many\t80\t80\t1\n"
        "A1\tA1b\tortholog_one2many\t79\t79\t1\n"
    )
    embedding = import_pairs(_pairs(tmp_path, "A1,A1a,0.10\nA1,A1b,0.99\n"), "human", "mouse")
    from orthovec.schemas.tables import write_table

    write_table(embedding, tmp_path / "emb.parquet", MAPPING, {})
    by_identity = _frame(import_homology(ensembl, "human", "mouse", "biomart", "hc-greedy"))
    fused = _frame(import_homology(ensembl, "human", "mouse", "biomart", "fused", tmp_path / "emb.parquet"))
    assert by_identity["gene_id_b"].to_list() == ["A1a"]
    assert fused["gene_id_b"].to_list() == ["A1b"]  # the embedding breaks the near-tie


def _pairs(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text("a,b,score\n" + body)
    return path


def test_pairs_relations_come_from_the_pairs_themselves(tmp_path: Path) -> None:
    rows = _frame(import_pairs(_pairs(tmp_path, "x,y,1\nx,z,0.5\nw,v,0.9\n"), "human", "mouse"))
    assert dict(zip(rows["gene_id_b"], rows["relation"], strict=True)) == {
        "y": "one2many",
        "z": "one2many",
        "v": "one2one",
    }


def test_an_unrecognised_table_lists_the_expected_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("foo,bar\n1,2\n")
    with pytest.raises(UserError, match="Gene name"):
        import_biomart(path, "human", "mouse")


def test_cli_import_then_evaluate_prints_the_contract_json(tmp_path: Path) -> None:
    out = tmp_path / "lm.parquet"
    runner = CliRunner()
    imported = runner.invoke(
        main,
        [
            "import-homology",
            str(shared_file("reference/seed_human_mouse_LM_O2O_esm2_15B.csv.gz")),
            "--from",
            "human",
            "--to",
            "mouse",
            "--input-format",
            "pairs",
            "--out",
            str(out),
        ],
    )
    assert imported.exit_code == 0, imported.output
    assert read_table(out, MAPPING).num_rows == 16_119
    result = runner.invoke(
        main,
        [
            "evaluate-mapping",
            str(out),
            "--truth",
            str(shared_file("reference/seed_human_mouse_ENS_M2M.tsv.gz")),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert {"precision", "recall", "f1", "coverage", "n_pairs"} <= set(scores)
    assert round(scores["precision"], 3) == 0.884


def test_a_mouse_side_export_is_oriented_by_its_column_names_whatever_the_species_are_called() -> None:
    """Issue 11 item 2: with binomial species names the old prefix guess imported this file reversed."""
    export = shared_file("scrna/baron_human2mouse_ensembl.csv.gz")  # columns name 'human' as the target
    rows = _frame(import_biomart(export, "homo_sapiens", "mus_musculus"))
    first = rows.row(0, named=True)
    assert (first["gene_symbol_a"], first["gene_symbol_b"]) == ("MT-ND1", "mt-Nd1")
    _assert_one2many_sides_follow_the_pairs(rows)


def test_an_export_whose_target_is_neither_species_is_refused() -> None:
    export = shared_file("scrna/baron_human2mouse_ensembl.csv.gz")
    with pytest.raises(UserError, match=r"target species 'human'.*neither 'rat' nor 'dog'.*will not guess") as error:
        import_biomart(export, "rat", "dog")
    assert (error.value.param, error.value.value) == ("species_b", "dog")  # the CLI says `--to dog: ...`


def _ensembl_and_embedding(tmp_path: Path, embedding_species: tuple[str, str], symbols: tuple[str, str]) -> Path:
    from orthovec.schemas.tables import write_table

    (tmp_path / "ens.tsv").write_text(
        "Gene name\tMouse gene name\tMouse homology type\t%id. target Mouse gene identical to query gene\t"
        "%id. query gene identical to target Mouse gene\tMouse orthology confidence [0 low, 1 high]\n"
        "TP53\tTrp53\tortholog_one2one\t80\t80\t1\n"
    )
    embedding = import_pairs(_pairs(tmp_path, f"{symbols[0]},{symbols[1]},0.9\n"), *embedding_species)
    write_table(embedding, tmp_path / "emb.parquet", MAPPING, {})
    return tmp_path / "emb.parquet"


def test_fused_import_refuses_an_embedding_mapping_of_other_species(tmp_path: Path) -> None:
    """Issue 11 item 7: a human → frog mapping used to fill frog scores into human → mouse pairs."""
    frog = _ensembl_and_embedding(tmp_path, ("human", "xenopus_tropicalis"), ("TP53", "tp53"))
    with pytest.raises(UserError, match=r"maps human → xenopus_tropicalis.*human → mouse") as error:
        import_homology(tmp_path / "ens.tsv", "human", "mouse", "biomart", "fused", frog)
    assert error.value.param == "embedding_mapping"


def test_fused_import_refuses_an_embedding_mapping_in_another_gene_space(tmp_path: Path) -> None:
    entrez = _ensembl_and_embedding(tmp_path, ("human", "mouse"), ("7157", "22059"))
    with pytest.raises(UserError, match="name genes differently"):
        import_homology(tmp_path / "ens.tsv", "human", "mouse", "biomart", "fused", entrez)


def test_the_homology_graph_is_scored_against_every_reference_ortholog_type(tmp_path: Path) -> None:
    mapping = import_pairs(_pairs(tmp_path, "X,Y,1\nX,Z,1\nW,V,1\n"), "human", "mouse")  # a one2many and a one2one
    (tmp_path / "truth.csv").write_text("a,b\nX,Y\nX,Z\nW,U\nQ,R\n")
    result = evaluate(mapping, import_pairs(tmp_path / "truth.csv", "human", "mouse"), "relation")
    assert result.graph_pairs == 3
    assert result.graph_precision == pytest.approx(2 / 3)  # W-V is wrong; X-Y and X-Z (one2many) are right
    assert result.graph_recall == pytest.approx(2 / 4)
    assert result.precision == 0.0 and result.n_reference == 2  # one-to-one scoring is unchanged


def test_fused_import_takes_the_embedding_score_of_a_fused_map(tmp_path: Path) -> None:
    from orthovec.schemas.tables import write_table

    ensembl = _ensembl_and_embedding(tmp_path, ("human", "mouse"), ("TP53", "Trp53"))
    table = read_table(ensembl, MAPPING)
    fused_map = table.set_column(table.schema.get_field_index("score"), "score", pa.array([1.9], pa.float32()))
    write_table(fused_map.append_column("embedding_score", pa.array([0.3], pa.float32())), ensembl, MAPPING, {})
    rows = _frame(import_homology(tmp_path / "ens.tsv", "human", "mouse", "biomart", "fused", ensembl))
    assert rows["embedding_score"].to_list() == [pytest.approx(0.3)]  # not the fused 1 + BSR score
    assert rows["score"].to_list() == [pytest.approx((0.8 + 0.3) / 2)]


def test_a_biomart_export_naming_a_species_in_several_words_is_read(tmp_path: Path) -> None:
    """Ensembl's common names can be several words ("Tropical clawed frog gene name")."""
    export = tmp_path / "frog.tsv"
    export.write_text(
        "Gene stable ID\tGene name\tTropical clawed frog gene stable ID\tTropical clawed frog gene name\t"
        "Tropical clawed frog homology type\n"
        "ENSG1\tTP53\tENSXETG1\ttp53\tortholog_one2one\n"
    )
    rows = _frame(import_biomart(export, "human", "xenopus_tropicalis"))
    assert rows.select("gene_id_a", "gene_id_b", "relation").row(0) == ("ENSG1", "ENSXETG1", "one2one")
