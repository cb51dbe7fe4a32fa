"""Integration through mapping tables: shared features, counts from the right object, hostile input, errors."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.core.logs import DataWarning
from orthovec.integrate.features import Features, SpeciesGeneReport, build_shared
from orthovec.integrate.inputs import species_counts
from orthovec.integrate.mappings import load_mappings, symbol_mapping
from orthovec.integrate.metrics import label_transfer, self_projection
from orthovec.lookup.homology.imported import import_pairs
from orthovec.schemas.errors import Invalid, NotFound
from tests.conftest import shared_file

pytestmark = pytest.mark.usefixtures("umap_compiled")  # tests/conftest.py: pynndescent compiled once


def _adata(genes: list[str], counts: list[list[float]], label: str = "beta") -> ad.AnnData:
    matrix = np.asarray(counts, dtype=np.float32).reshape(-1, len(genes))
    obs = pd.DataFrame({"cell_ontology_class": [label] * len(matrix)}, index=[f"c{i}" for i in range(len(matrix))])
    return ad.AnnData(X=sp.csr_matrix(matrix), obs=obs, var=pd.DataFrame(index=genes))


def _pairs_mapping(tmp_path: Path, rows: str, a: str = "human", b: str = "mouse") -> pa.Table:
    path = tmp_path / f"pairs_{a}_{b}.csv"
    header = "a,b,score" if rows.split("\n")[0].count(",") == 2 else "a,b"
    path.write_text(header + "\n" + rows)
    return import_pairs(path, a, b)


def _shared(
    adatas: dict[str, ad.AnnData], mapping: pa.Table, features: Features = "one2one"
) -> tuple[ad.AnnData, list[SpeciesGeneReport]]:
    counts = {name: species_counts(name, data) for name, data in adatas.items()}
    return build_shared(counts, mapping, features)


HUMAN = _adata(["INS", "GCG", "AMY2A", "AMY2B", "ONLYHUMAN"], [[5, 1, 2, 3, 7], [0, 4, 1, 0, 1]])
MOUSE = _adata(["Ins1", "Ins2", "Gcg", "Amy2a1", "Amy2a2", "Onlymouse"], [[2, 3, 1, 1, 1, 9], [0, 0, 5, 2, 2, 0]])
# INS ↔ Ins1, Ins2 (one2many); GCG ↔ Gcg (one2one); AMY2A/AMY2B ↔ Amy2a1/Amy2a2 (many2many).
ROWS = "INS,Ins1\nINS,Ins2\nGCG,Gcg\nAMY2A,Amy2a1\nAMY2A,Amy2a2\nAMY2B,Amy2a1\nAMY2B,Amy2a2\nMISSING,Gone1\n"


def test_one2one_keeps_only_one_to_one_pairs_named_after_the_reference(tmp_path: Path) -> None:
    shared, reports = _shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, ROWS))
    assert list(shared.var_names) == ["GCG"]
    assert shared.var["gene_mouse"].tolist() == ["Gcg"]
    assert shared.obs["species"].tolist() == ["human", "human", "mouse", "mouse"]
    np.testing.assert_array_equal(shared.X.toarray().ravel(), [1, 4, 1, 5])
    human = reports[0]
    assert human.expressed_genes == 5 and human.expressed_genes_lost == 4
    assert "ONLYHUMAN" in human.examples_lost
    assert human.mapped_features_absent_from_data == 1  # MISSING is mapped but not measured


def test_groups_sum_the_counts_of_paralogs(tmp_path: Path) -> None:
    shared, reports = _shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, ROWS), "groups")
    features = dict(zip(shared.var["gene_human"], range(shared.n_vars), strict=True))
    counts = shared.X.toarray()
    amy = features["AMY2A,AMY2B"]
    np.testing.assert_array_equal(counts[:, amy], [2 + 3, 1 + 0, 1 + 1, 2 + 2])  # many2many summed per species
    ins = features["INS"]
    np.testing.assert_array_equal(counts[:, ins], [5, 0, 2 + 3, 0])  # one2many: Ins1 + Ins2
    assert shared.var.loc[shared.var_names[amy], "n_genes"] == 4
    assert reports[1].expressed_genes_lost == 1  # only Onlymouse


def test_three_species_are_joined_through_the_reference(tmp_path: Path) -> None:
    rat = _adata(["Gcg", "Ins1", "Amy2a1"], [[7, 1, 0]])
    mapping = pa.concat_tables(
        [_pairs_mapping(tmp_path, ROWS), _pairs_mapping(tmp_path, "GCG,Gcg\nINS,Ins1\n", "human", "rat")]
    )
    shared, reports = _shared({"human": HUMAN, "mouse": MOUSE, "rat": rat}, mapping)
    # INS is one2one with rat but one2many with mouse: only GCG is one-to-one in every species.
    assert list(shared.var_names) == ["GCG"] and shared.var["gene_rat"].tolist() == ["Gcg"]
    np.testing.assert_array_equal(shared.X.toarray().ravel(), [1, 4, 1, 5, 7])
    assert shared.uns["orthovec"]["reference"] == "human" and [r.species for r in reports] == ["human", "mouse", "rat"]
    grouped, _ = _shared({"human": HUMAN, "mouse": MOUSE, "rat": rat}, mapping, "groups")
    assert set(grouped.var["gene_rat"]) == {"Gcg", "Ins1"}  # AMY2A/B have no rat partner in the mapping


def test_a_table_written_the_other_way_round_is_read_from_the_reference(tmp_path: Path) -> None:
    """mouse → human rows, with a one-sided column (orthovec map's `margin_a`), still give human-named features."""
    backwards = _pairs_mapping(tmp_path, "Gcg,GCG\nIns1,INS\n", "mouse", "human")
    backwards = backwards.append_column("margin_a", pa.array([0.1, 0.2], pa.float32()))
    shared, _ = _shared({"human": HUMAN, "mouse": MOUSE}, backwards)
    assert list(shared.var_names) == ["GCG", "INS"] and shared.var["gene_mouse"].tolist() == ["Gcg", "Ins1"]


def test_a_species_without_a_mapping_to_the_reference_is_named(tmp_path: Path) -> None:
    rat = _adata(["Gcg"], [[7]])
    mouse_rat = _pairs_mapping(tmp_path, "Gcg,Gcg\n", "mouse", "rat")
    mapping = pa.concat_tables([_pairs_mapping(tmp_path, ROWS), mouse_rat])
    with pytest.raises(NotFound, match=r"reference='human': species are joined through .*mapping table for human__rat"):
        _shared({"human": HUMAN, "mouse": MOUSE, "rat": rat}, mapping)


def test_counts_and_gene_names_come_from_the_same_object(tmp_path: Path) -> None:
    """raw holds counts in another gene order than var (here: log data in X): features must get raw's counts."""
    data = _adata(["INS", "GCG"], [[0.5, 0.1]])  # X: transformed values, var order INS, GCG
    data.raw = _adata(["GCG", "INS", "EXTRA"], [[9, 3, 1]])  # raw: another order and one more gene
    mapping = _pairs_mapping(tmp_path, "INS,Ins1\nGCG,Gcg\n")
    shared, reports = _shared({"human": data, "mouse": _adata(["Ins1", "Gcg"], [[1, 2]])}, mapping)
    counts = dict(zip(shared.var_names, shared.X.toarray()[0], strict=True))
    assert counts == {"INS": 3, "GCG": 9}
    assert reports[0].counts_from == "raw.X" and reports[0].genes_in_data == 3


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([[1.0, -2.0]], "negative values"),
        ([[1.0, np.nan]], "NaN or infinite"),
        ([], "0 cells"),
    ],
)
def test_hostile_counts_are_refused_with_the_reason(counts: list[list[float]], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        species_counts("human", _adata(["A", "B"], counts))


def test_missing_var_key_is_named() -> None:
    with pytest.raises(Invalid, match=r"var_key='symbol': human: not a column of X\.var"):
        species_counts("human", HUMAN, var_key="symbol")


def test_non_integer_values_and_duplicate_names_are_data_warnings() -> None:
    data = _adata(["A", "B", "A"], [[0.5, 1, 4]])
    with pytest.warns(DataWarning) as caught:
        counts = species_counts("human", data)
    messages = [str(w.message) for w in caught]
    assert any("non-integer values" in m for m in messages)
    assert any("1 duplicate gene names (e.g. A)" in m and "first occurrence" in m for m in messages)
    assert list(counts.gene_names) == ["A", "B", "A"]


def test_symbol_matching_is_the_upper_case_baseline() -> None:
    mapping = symbol_mapping({"human": HUMAN.var_names, "mouse": MOUSE.var_names}, "human")
    assert mapping.column("gene_id_b").to_pylist() == ["Gcg"]


def test_no_mapping_means_an_error_not_the_symbol_baseline() -> None:
    with pytest.raises(Invalid, match="does not fall back to symbols"):
        load_mappings([], {"human": HUMAN.var_names, "mouse": MOUSE.var_names}, "human")
    _, record, _ = load_mappings(["symbols"], {"human": HUMAN.var_names, "mouse": MOUSE.var_names}, "human")
    assert record == [
        {"name": "symbols", "path": None, "n_rows": 1, "species_pairs": ["human->mouse"], "sources": ["symbols:upper"]}
    ]


def test_mismatched_species_names_and_no_shared_genes_are_clear(tmp_path: Path) -> None:
    mapping = _pairs_mapping(tmp_path, ROWS)
    with pytest.raises(NotFound, match=r"adatas: species frog not in the mapping \(it has human, mouse\)"):
        _shared({"human": HUMAN, "frog": MOUSE}, mapping)
    with pytest.raises(NotFound, match="No shared genes"):
        _shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, "FOO,Bar\n"))


def test_label_transfer_counts_only_shared_cell_types() -> None:
    x = np.array([[0.0], [0.1], [5.0], [0.05], [5.1], [9.0]])
    species = np.array(["a", "a", "a", "b", "b", "b"])
    labels = np.array(["t1", "t1", "t2", "t1", "t2", "only_b"])
    result = label_transfer(x, species, labels, k=1)
    assert result == {"a->b": 1.0, "b->a": 1.0}


def test_self_projection_sees_separated_types_and_loses_mixed_ones() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(["t1", "t2"], 30)
    separated = np.concatenate([rng.normal(0, 1, (30, 2)), rng.normal(20, 1, (30, 2))])
    assert self_projection(separated, labels) == 1.0
    assert self_projection(rng.normal(0, 1, (60, 2)), labels) < 0.8  # over-corrected: types mixed


TINY = [
    "--adata",
    f"human={shared_file('scrna/tiny/baron_human_tiny.h5ad')}",
    "--adata",
    f"mouse={shared_file('scrna/tiny/baron_mouse_tiny.h5ad')}",
]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mapping", "symbols", "--adata", "human"], "expected NAME=VALUE"),
        (["--mapping", "symbols", "--adata", "human=/nonexistent.h5ad"], "file not found"),
        (["--mapping", "symbols", "--label-key", "nope", *TINY], "no obs column 'nope'"),
        (["--mapping", "symbols", "--label-key", "organ", *TINY], "has a single value ('Pancreas')"),
        (["--mapping", "symbols", "--var-key", "nope", *TINY], "--var-key nope: human: not a column"),
        (TINY, "--mapping: Give a mapping"),
    ],
)
def test_cli_mistakes_are_clear_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["integrate", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_missing_scvi_tools_is_reported_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scvi" else real(name, *a))
    result = CliRunner().invoke(
        main, ["integrate", "--mapping", "symbols", "--correct", "scanvi", "--adata", "human=/nope.h5ad", "--adata",
               "mouse=/nope.h5ad", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert result.exit_code == 2 and "needs scvi-tools" in result.output and "orthovec[scvi]" in result.output


def test_an_out_directory_of_other_files_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("mine")
    args = ["integrate", "--mapping", "symbols", *TINY, "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "holds files orthovec did not write (thesis.tex" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


def test_graph_features_project_each_species_onto_the_other_through_the_homology_graph(tmp_path: Path) -> None:
    """SAMap's projection with counts shared out among homologs: own genes keep their counts, each
    species' cells get the other species' genes too, and a cell's projected counts sum to its own."""
    shared, reports = _shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, ROWS), "graph")
    human_genes = ["human:INS", "human:GCG", "human:AMY2A", "human:AMY2B"]
    mouse_genes = ["mouse:Ins1", "mouse:Ins2", "mouse:Gcg", "mouse:Amy2a1", "mouse:Amy2a2"]
    assert list(shared.var_names) == human_genes + mouse_genes
    counts = pd.DataFrame(shared.X.toarray(), columns=shared.var_names)
    # human cell 0 (INS 5, GCG 1, AMY2A 2, AMY2B 3): INS splits over Ins1/Ins2, AMY2A and AMY2B over Amy2a1/2.
    np.testing.assert_allclose(counts.iloc[0], [5, 1, 2, 3, 2.5, 2.5, 1, 2.5, 2.5])
    # mouse cell 0 (Ins1 2, Ins2 3, Gcg 1, Amy2a1 1, Amy2a2 1): both Ins go to INS; each Amy2a halves over AMY2A/B.
    np.testing.assert_allclose(counts.iloc[2], [5, 1, 1, 1, 2, 3, 1, 1, 1])
    own, projected = counts.iloc[:, :4].sum(axis=1), counts.iloc[:, 4:].sum(axis=1)
    np.testing.assert_allclose(own[:2], projected[:2])  # human cells: projection moves counts, never makes them
    assert (
        shared.var.loc["mouse:Ins2", "gene_human"] == "INS" and shared.var.loc["human:INS", "gene_mouse"] == "Ins1,Ins2"
    )
    assert reports[0].expressed_genes_lost == 1 and reports[1].expressed_genes_lost == 1  # ONLYHUMAN, Onlymouse


def test_graph_edges_are_weighted_by_the_mapping_score(tmp_path: Path) -> None:
    mapping = _pairs_mapping(tmp_path, "INS,Ins1,0.9\nINS,Ins2,0.3\nGCG,Gcg,1.0\n")
    shared, _ = _shared({"human": HUMAN, "mouse": MOUSE}, mapping, "graph")
    counts = pd.DataFrame(shared.X.toarray(), columns=shared.var_names)
    assert counts.loc[0, "mouse:Ins1"] == pytest.approx(5 * 0.75) and counts.loc[0, "mouse:Ins2"] == pytest.approx(1.25)
    assert counts.loc[2, "human:INS"] == 2 + 3  # each mouse gene has one human homolog: all its counts go there


def test_graph_with_one_to_one_edges_only_is_the_one2one_space_twice(tmp_path: Path) -> None:
    mapping = _pairs_mapping(tmp_path, "INS,Ins1\nGCG,Gcg\n")
    graph, _ = _shared({"human": HUMAN, "mouse": MOUSE}, mapping, "graph")
    one2one, _ = _shared({"human": HUMAN, "mouse": MOUSE}, mapping, "one2one")
    x = graph.X.toarray()
    np.testing.assert_array_equal(x[:, :2], one2one.X.toarray())
    np.testing.assert_array_equal(x[:, 2:], one2one.X.toarray())


def test_composition_mixing_reads_cross_species_neighbours_against_what_the_types_allow() -> None:
    """Type t1 exists in both species (30 a, 20 b), t2 only in a: perfect mixing scores ~1 of the possible,
    species kept apart ~0, and the ceiling of the raw figure is what the composition allows."""
    from orthovec.integrate.metrics import _neighbours, composition_mixing

    rng = np.random.default_rng(0)
    species = np.array(["a"] * 30 + ["b"] * 20 + ["a"] * 30)
    labels = np.array(["t1"] * 50 + ["t2"] * 30)
    mixed = np.concatenate([rng.normal(0, 1, (50, 5)), rng.normal(50, 1, (30, 5))])
    result = composition_mixing(_neighbours(mixed, 15).indices, species, labels)
    assert 0.8 < result["mixing_of_possible"] < 1.2
    assert result["cross_species_neighbour_ceiling"] == pytest.approx((30 * 20 / 49 + 20 * 30 / 49) / 80)
    assert set(result["mixing_per_cell_type"]) == {"t1"}  # t2 cannot mix and is not held against the method
    apart = mixed.copy()
    apart[30:50] += 20  # species b's t1 cells moved away from a's
    assert composition_mixing(_neighbours(apart, 15).indices, species, labels)["mixing_of_possible"] < 0.05


def _donor_cells(genes: list[str], seed: int) -> ad.AnnData:
    """Two cell types (genes 0-9 / 10-19 high) from two donors; donor 2's cells also carry a batch
    signal (genes 20-29 high) that has nothing to do with their type."""
    rng = np.random.default_rng(seed)
    labels, donors = np.repeat(["t1", "t2"], 40), np.tile(np.repeat(["d1", "d2"], 20), 2)
    rate = np.full((80, len(genes)), 1.0)
    rate[labels == "t1", :10] = rate[labels == "t2", 10:20] = 20.0
    rate[donors == "d2", 20:] = 40.0
    obs = pd.DataFrame({"cell_ontology_class": labels, "donor": donors}, index=[f"{seed}-{i}" for i in range(80)])
    return ad.AnnData(X=sp.csr_matrix(rng.poisson(rate).astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes))


def test_harmony_corrects_donors_inside_each_species_when_given_as_covariates(tmp_path: Path) -> None:
    """Donors are batches inside a species: as a covariate, Harmony mixes them; species alone leaves them apart."""
    from sklearn.neighbors import NearestNeighbors

    from orthovec.integrate.process import ProcessConfig, process

    genes = [f"G{i}" for i in range(30)]
    mapping = _pairs_mapping(tmp_path, "".join(f"G{i},g{i}\n" for i in range(30)))
    other_donor = {}
    for covariates in ((), ("donor",)):
        shared, _ = _shared(
            {"human": _donor_cells(genes, 1), "mouse": _donor_cells([g.lower() for g in genes], 2)}, mapping
        )
        record = process(shared, ProcessConfig(correct="harmony", covariates=covariates), "cell_ontology_class")
        assert record["covariates"] == list(covariates)
        x, obs = shared.obsm["X_pca_harmony"], shared.obs
        same = (obs["species"].to_numpy()[:, None] == obs["species"].to_numpy()) & (
            obs["cell_ontology_class"].to_numpy()[:, None] == obs["cell_ontology_class"].to_numpy()
        )
        _, neighbours = NearestNeighbors(n_neighbors=11).fit(x).kneighbors(x)
        donor = obs["donor"].to_numpy()
        # among neighbours of the same species and type, the share from the other donor (0.5 when mixed)
        shares = [
            (donor[n[1:]][same[i, n[1:]]] != donor[i]).mean() for i, n in enumerate(neighbours) if same[i, n[1:]].any()
        ]
        other_donor[covariates] = float(np.mean(shares))
    assert other_donor[()] < 0.1 and other_donor[("donor",)] > 0.3
