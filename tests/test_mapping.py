"""Mapping tables: exact top-k, RBH, one-to-one (greedy and optimal), homology relations and groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest
import torch
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.lookup.homology.mapping import MappingParams, build_mapping, map_species
from orthovec.lookup.homology.one2one import greedy_one2one, optimal_one2one
from orthovec.lookup.homology.similarity import blocked_topk, prepare
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid
from orthovec.schemas.tables import GENES, HOMOLOGY_GROUPS, MAPPING, genes_table, read_table, write_table

MODEL = "esm2_t6_8M_UR50D"


def _frame(table) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return pl.from_arrow(table)


def _unit(angle_degrees: float) -> list[float]:
    angle = np.radians(angle_degrees)
    return [float(np.cos(angle)), float(np.sin(angle))]


@pytest.mark.parametrize(("n", "m", "block"), [(57, 91, 7), (91, 57, 100), (40, 40, 1), (5, 3, 2)])
def test_blocked_topk_equals_dense_ranking(n: int, m: int, block: int) -> None:
    rng = np.random.default_rng(n * m)
    a, b = prepare(rng.normal(size=(n, 8)), "cosine"), prepare(rng.normal(size=(m, 8)), "cosine")
    top = blocked_topk(a, b, k=4, block_rows=block)
    dense = (a @ b.T).numpy()
    k_ab, k_ba = min(4, m), min(4, n)
    np.testing.assert_array_equal(top.a_to_b, np.argsort(-dense, axis=1)[:, :k_ab])
    np.testing.assert_array_equal(top.b_to_a, np.argsort(-dense.T, axis=1)[:, :k_ba])
    np.testing.assert_allclose(top.a_to_b_score, -np.sort(-dense, axis=1)[:, :k_ab], atol=1e-6)


def test_pearson_is_the_correlation_of_the_vectors() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 12)) + 3.0, rng.normal(size=(4, 12))
    scores = (prepare(a, "pearson") @ prepare(b, "pearson").T).numpy()
    np.testing.assert_allclose(scores, np.corrcoef(a, b)[:6, 6:], atol=1e-5)


def test_greedy_reproduces_the_dense_procedure_even_when_topk_lists_run_out() -> None:
    rng = np.random.default_rng(7)
    a, b = prepare(rng.normal(size=(60, 6)), "cosine"), prepare(rng.normal(size=(60, 6)), "cosine")
    top = blocked_topk(a, b, k=2)
    pairs = greedy_one2one(top.a_to_b, top.a_to_b_score, lambda row, free: (b[free] @ a[row]).numpy(), 60)
    dense = (a @ b.T).numpy()
    expected, used_a, used_b = set(), set(), set()
    for flat in np.argsort(-dense, axis=None):
        i, j = divmod(int(flat), 60)
        if i not in used_a and j not in used_b:
            expected.add((i, j))
            used_a.add(i)
            used_b.add(j)
    assert {(r, c) for r, c, _ in pairs} == expected


@pytest.mark.parametrize(("n", "m"), [(30, 90), (90, 30)])
def test_greedy_pairs_do_not_depend_on_which_species_is_larger(n: int, m: int) -> None:
    """The greedy runs from the smaller side; pairs (ties included: duplicated genes) stay the dense ones."""
    rng = np.random.default_rng(3)
    vectors_a, vectors_b = rng.normal(size=(n, 6)), rng.normal(size=(m, 6))
    vectors_a[1], vectors_b[2] = vectors_a[0], vectors_b[0]  # identical genes: exact ties
    genes_a = genes_table("a", [f"a{i}" for i in range(n)], vectors_a.astype(np.float32))
    genes_b = genes_table("b", [f"b{i}" for i in range(m)], vectors_b.astype(np.float32))
    table = build_mapping(genes_a, genes_b, MappingParams(k=2, max_evalue=float("inf")), MODEL)  # no floor
    called = table.filter(pc.field("is_one2one_greedy"))
    pairs = zip(called["gene_id_a"].to_pylist(), called["gene_id_b"].to_pylist(), strict=True)
    got = {(int(a[1:]), int(b[1:])) for a, b in pairs}
    dense = (prepare(vectors_a, "cosine") @ prepare(vectors_b, "cosine").T).numpy()
    order = np.lexsort((np.tile(np.arange(m), n), np.repeat(np.arange(n), m), -dense.ravel()))
    expected, used_a, used_b = set(), set(), set()
    for flat in order:
        i, j = divmod(int(flat), m)
        if i not in used_a and j not in used_b:
            expected.add((i, j))
            used_a.add(i)
            used_b.add(j)
    assert got == expected


def test_optimal_assignment_beats_greedy_on_a_crafted_case() -> None:
    # Greedy takes (0,0)=0.9 and is left with (1,1)=0.1; optimal takes (0,1)+(1,0)=0.8+0.8.
    rows, cols, scores = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([0.9, 0.8, 0.8, 0.1])
    chosen = optimal_one2one(rows, cols, scores, 2, 2)
    assert sorted(zip(rows[chosen].tolist(), cols[chosen].tolist(), strict=True)) == [(0, 1), (1, 0)]
    ranked = np.array([[0, 1], [0, 1]])
    greedy = greedy_one2one(ranked, np.array([[0.9, 0.8], [0.8, 0.1]]), lambda r, f: scores[r * 2 + f], 2)
    assert {(r, c) for r, c, _ in greedy} == {(0, 0), (1, 1)}


def test_every_relation_and_group_on_a_constructed_case() -> None:
    """2-D unit vectors at chosen angles: cosine = cos(angle difference)."""
    # A: a1 (0°) ↔ b1 (0°) one-to-one; a2 (60°) ↔ b2, b3 (59°, 61°) one-to-many;
    # a3, a4 (120°, 121°) ↔ b4 (120.5°) many-to-one; a5, a6 ↔ b5, b6 (all ~180°) many-to-many.
    angles_a = {"a1": 0, "a2": 60, "a3": 120, "a4": 121, "a5": 180, "a6": 180.6}
    angles_b = {"b1": 0, "b2": 59, "b3": 61, "b4": 120.5, "b5": 180.2, "b6": 180.4}
    genes_a = genes_table("A", list(angles_a), np.array([_unit(x) for x in angles_a.values()]))
    genes_b = genes_table("B", list(angles_b), np.array([_unit(x) for x in angles_b.values()]))
    # Six genes are too few for any pair to be significant: the one-to-one floor is switched off here.
    table = build_mapping(genes_a, genes_b, MappingParams(k=3, margin=0.001, max_evalue=np.inf), MODEL)
    MAPPING.validate(table, "test")
    graph = _frame(table).filter(pl.col("relation").is_not_null())
    relation = {(r["gene_id_a"], r["gene_id_b"]): r["relation"] for r in graph.iter_rows(named=True)}
    assert relation == {
        ("a1", "b1"): "one2one",
        ("a2", "b2"): "one2many",
        ("a2", "b3"): "one2many",
        ("a3", "b4"): "many2one",
        ("a4", "b4"): "many2one",
        ("a5", "b5"): "many2many",
        ("a5", "b6"): "many2many",
        ("a6", "b5"): "many2many",
        ("a6", "b6"): "many2many",
    }
    group = {(r["gene_id_a"], r["gene_id_b"]): r["group_id"] for r in graph.iter_rows(named=True)}
    assert group[("a2", "b2")] == group[("a2", "b3")] != group[("a1", "b1")]
    assert len(set(group.values())) == 4
    rows = _frame(table)
    rbh = rows.filter(pl.col("is_rbh"))
    assert ("a1", "b1") in set(zip(rbh["gene_id_a"], rbh["gene_id_b"], strict=True))
    assert rows.filter(pl.col("is_one2one_greedy")).height == 6
    assert rows.filter(pl.col("gene_id_a") == "a1")["rank_ab"].to_list()[0] == 1


def _atlas_with(tmp_path: Path, species: dict[str, np.ndarray], model: str = MODEL) -> Atlas:
    atlas = Atlas(tmp_path / "atlas")
    for name, vectors in species.items():
        ids = [f"{name}{i}" if name != "human" else f"G{i}" for i in range(len(vectors))]
        table = genes_table(name, ids, vectors, gene_symbols=[f"GENE{i}" for i in range(len(vectors))])
        write_table(table, atlas.genes(name, model), GENES, {"model": model})
    return atlas


def test_map_writes_one_table_per_pair_and_a_groups_table_for_three_species(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 64)).astype(np.float32)  # 64-d: a planted match stands out from chance
    species = {
        name: base + rng.normal(scale=0.05, size=base.shape).astype(np.float32) for name in ("human", "mouse", "frog")
    }
    atlas = _atlas_with(tmp_path, species)
    result = CliRunner().invoke(main, ["map", "human", "mouse", "frog", "--atlas", str(atlas.root)])
    assert result.exit_code == 0, result.output
    pair = _frame(read_table(atlas.mapping(MODEL, "human", "mouse"), MAPPING))
    greedy = pair.filter(pl.col("is_one2one_greedy"))
    assert greedy.height == 40
    assert (greedy["gene_id_a"].str.strip_prefix("G") == greedy["gene_id_b"].str.strip_prefix("mouse")).all()
    assert atlas.mapping(MODEL, "mouse", "frog").exists()
    groups = _frame(read_table(atlas.multi_mapping(MODEL, ["human", "mouse", "frog"]), HOMOLOGY_GROUPS))
    assert {"group_id", "n_species", "human", "mouse", "frog", "human_symbols"} <= set(groups.columns)
    assert groups.filter(pl.col("n_species") == 3).height >= 35


@pytest.mark.parametrize(
    ("species", "message"),
    [(["human", "yeast"], "Unknown species 'yeast'"), (["human"], "at least two different species")],
)
def test_map_bad_species_are_clear_errors(tmp_path: Path, species: list[str], message: str) -> None:
    atlas = _atlas_with(tmp_path, {"human": np.eye(4, dtype=np.float32), "mouse": np.eye(4, dtype=np.float32)})
    result = CliRunner().invoke(main, ["map", *species, "--atlas", str(atlas.root)])
    assert result.exit_code == 2 and message in result.output


def test_species_indexed_with_different_models_cannot_be_mapped(tmp_path: Path) -> None:
    atlas = _atlas_with(tmp_path, {"human": np.eye(4, dtype=np.float32)})
    _atlas_with(tmp_path, {"mouse": np.eye(4, dtype=np.float32)}, model="esm2_t12_35M_UR50D")
    with pytest.raises(Invalid, match="Mismatched models"):
        map_species(atlas, ["human", "mouse"])


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--margin", "nan", "<= 1"),
        ("--margin", "-0.1", "<= 1"),
        ("--max-evalue", "nan", ">= 0"),
        ("--max-evalue", "-1", ">= 0"),
        ("--min-score", "nan", "<= 2"),
        ("-k", "0", ">= 1"),
    ],
)
def test_map_refuses_nan_and_out_of_range_settings_by_the_shared_rules(
    tmp_path: Path, option: str, value: str, allowed: str
) -> None:
    """Issue 19 item 7: `--margin nan` gave 0 groups and `--max-evalue nan` 0 one-to-one calls."""
    atlas = _atlas_with(tmp_path, {"human": np.eye(4, dtype=np.float32), "mouse": np.eye(4, dtype=np.float32)})
    result = CliRunner().invoke(main, ["map", "human", "mouse", option, value, "--atlas", str(atlas.root)])
    assert result.exit_code == 2 and option in result.output and allowed in result.output
    assert "Traceback" not in result.output and not list((atlas.root / "mappings").glob("*/*.parquet"))
    name = option.lstrip("-").replace("-", "_")
    with pytest.raises(Invalid, match=rf"{name}="):
        MappingParams(**{name: float(value)})


def test_an_empty_atlas_says_to_index_first(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["map", "human", "mouse", "--atlas", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "orthovec index" in result.output


def test_memory_stays_bounded_by_the_block(tmp_path: Path) -> None:
    """A 6000 x 6000 map in blocks of 500 rows never holds more than one 500 x 6000 score block."""
    rng = np.random.default_rng(3)
    a, b = prepare(rng.normal(size=(6000, 8)), "cosine"), prepare(rng.normal(size=(6000, 8)), "cosine")
    seen: list[tuple[int, ...]] = []
    original = torch.Tensor.__matmul__

    def spy(self: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        result = original(self, other)
        seen.append(tuple(result.shape))
        return result

    torch.Tensor.__matmul__ = spy  # type: ignore[method-assign]
    try:
        blocked_topk(a, b, k=5, block_rows=500)
    finally:
        torch.Tensor.__matmul__ = original  # type: ignore[method-assign]
    assert seen and max(rows for rows, _ in seen) == 500
