"""Integration through mapping tables: shared features, gene-loss report, metrics, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from orthovec.integrate.features import build_shared, symbol_mapping
from orthovec.integrate.metrics import label_transfer
from orthovec.lookup.homology import import_pairs
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import MAPPING, write_table

from orthovec.cli import main
from tests.conftest import shared_file


def _adata(genes: list[str], counts: list[list[float]]) -> ad.AnnData:
    obs = pd.DataFrame({"cell_ontology_class": ["beta"] * len(counts)}, index=[f"c{i}" for i in range(len(counts))])
    return ad.AnnData(X=sp.csr_matrix(np.array(counts, dtype=np.float32)), obs=obs, var=pd.DataFrame(index=genes))


def _pairs_mapping(tmp_path: Path, rows: str) -> pa.Table:
    path = tmp_path / "pairs.csv"
    path.write_text("a,b\n" + rows)
    return import_pairs(path, "human", "mouse")


HUMAN = _adata(["INS", "GCG", "AMY2A", "AMY2B", "ONLYHUMAN"], [[5, 1, 2, 3, 7], [0, 4, 1, 0, 1]])
MOUSE = _adata(["Ins1", "Ins2", "Gcg", "Amy2a1", "Amy2a2", "Onlymouse"], [[2, 3, 1, 1, 1, 9], [0, 0, 5, 2, 2, 0]])
# INS ↔ Ins1, Ins2 (one2many); GCG ↔ Gcg (one2one); AMY2A/AMY2B ↔ Amy2a1/Amy2a2 (many2many).
ROWS = "INS,Ins1\nINS,Ins2\nGCG,Gcg\nAMY2A,Amy2a1\nAMY2A,Amy2a2\nAMY2B,Amy2a1\nAMY2B,Amy2a2\nMISSING,Gone1\n"


def test_one2one_keeps_only_one_to_one_pairs_named_after_the_reference(tmp_path: Path) -> None:
    shared, reports = build_shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, ROWS), "one2one")
    assert list(shared.var_names) == ["GCG"]
    assert shared.var["gene_mouse"].tolist() == ["Gcg"]
    assert shared.obs["species"].tolist() == ["human", "human", "mouse", "mouse"]
    np.testing.assert_array_equal(shared.X.toarray().ravel(), [1, 4, 1, 5])
    human = reports[0]
    assert human.expressed_genes == 5 and human.expressed_genes_lost == 4
    assert "ONLYHUMAN" in human.examples_lost
    assert human.mapped_features_absent_from_data == 1  # MISSING is mapped but not measured


def test_groups_sum_the_counts_of_paralogs(tmp_path: Path) -> None:
    shared, reports = build_shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, ROWS), "groups")
    features = dict(zip(shared.var["gene_human"], range(shared.n_vars), strict=True))
    counts = shared.X.toarray()
    amy = features["AMY2A,AMY2B"]
    np.testing.assert_array_equal(counts[:, amy], [2 + 3, 1 + 0, 1 + 1, 2 + 2])  # many2many summed per species
    ins = features["INS"]
    np.testing.assert_array_equal(counts[:, ins], [5, 0, 2 + 3, 0])  # one2many: Ins1 + Ins2
    assert shared.var.loc[shared.var_names[amy], "n_genes"] == 4
    assert reports[1].expressed_genes_lost == 1  # only Onlymouse


def test_symbol_matching_is_the_upper_case_baseline() -> None:
    mapping = symbol_mapping({"human": HUMAN, "mouse": MOUSE})
    assert mapping.column("gene_id_b").to_pylist() == ["Gcg"]


def test_mismatched_species_names_and_no_shared_genes_are_clear(tmp_path: Path) -> None:
    mapping = _pairs_mapping(tmp_path, ROWS)
    with pytest.raises(UserError, match=r"Species frog not in the mapping \(it has human, mouse\)"):
        build_shared({"human": HUMAN, "frog": MOUSE}, mapping, "one2one")
    with pytest.raises(UserError, match="No shared genes"):
        build_shared({"human": HUMAN, "mouse": MOUSE}, _pairs_mapping(tmp_path, "FOO,Bar\n"), "one2one")


def test_label_transfer_counts_only_shared_cell_types() -> None:
    x = np.array([[0.0], [0.1], [5.0], [0.05], [5.1], [9.0]])
    species = np.array(["a", "a", "a", "b", "b", "b"])
    labels = np.array(["t1", "t1", "t2", "t1", "t2", "only_b"])
    result = label_transfer(x, species, labels, k=1)
    assert result == {"a->b": 1.0, "b->a": 1.0}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("integrate") / "out"
    mapping_path = out.parent / "ensembl.parquet"
    from orthovec.lookup.homology import import_biomart

    write_table(
        import_biomart(shared_file("scrna/baron_human2mouse_ensembl.csv.gz"), "human", "mouse"),
        mapping_path,
        MAPPING,
        {},
    )
    result = CliRunner().invoke(
        main,
        [
            "integrate",
            "--mapping",
            str(mapping_path),
            "--adata",
            f"human={shared_file('scrna/tiny/baron_human_tiny.h5ad')}",
            "--adata",
            f"mouse={shared_file('scrna/tiny/baron_mouse_tiny.h5ad')}",
            "--out",
            str(out),
        ],
    )
    return out, result


def test_cli_writes_shared_data_metrics_and_figures(tiny_run: tuple[Path, object]) -> None:
    out, result = tiny_run
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {
        "celltype_asw",
        "species_asw",
        "ilisi",
        "clisi",
        "ari",
        "nmi",
        "graph_connectivity",
        "label_transfer",
    } <= set(metrics)
    assert set(metrics["label_transfer"]) == {"human->mouse", "mouse->human"}
    assert all(0 <= metrics[k] <= 1 for k in ("celltype_asw", "species_asw", "ilisi", "clisi", "graph_connectivity"))
    # 10 shared cell types: chance is ~0.1; pancreas types are easy to transfer.
    assert min(metrics["label_transfer"].values()) > 0.5
    shared = ad.read_h5ad(out / "shared.h5ad")
    assert "counts" in shared.layers and "X_pca_harmony" in shared.obsm and "leiden" in shared.obs
    assert set(shared.obs["species"]) == {"human", "mouse"}
    assert shared.uns["orthovec"]["gene_report"]["human"]["genes_in_data"] == 1792
    for png in ("umap_species.png", "umap_celltype.png", "celltype_agreement.png"):
        assert (out / png).stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adata", "human"], "expected SPECIES=PATH"),
        (["--adata", "human=/nonexistent.h5ad", "--adata", "mouse=/nonexistent.h5ad"], "file not found"),
        (["--label-key", "nope"], "no obs column 'nope'"),
    ],
)
def test_cli_mistakes_are_clear_errors(tmp_path: Path, args: list[str], message: str) -> None:
    base = [
        "--adata",
        f"human={shared_file('scrna/tiny/baron_human_tiny.h5ad')}",
        "--adata",
        f"mouse={shared_file('scrna/tiny/baron_mouse_tiny.h5ad')}",
    ]
    full = args if args[0] == "--adata" else [*base, *args]
    result = CliRunner().invoke(main, ["integrate", "--mapping", "symbols", *full, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
