"""A whole `orthovec integrate` run on the tiny Baron files, three species (rat = relabelled mouse copy):
outputs, the record of what made them, downstream tables, and outputs that are swapped in as a set."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import anndata as ad
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner, Result

from orthovec.cli import main
from orthovec.integrate.run import IntegrateConfig, integrate_species
from orthovec.lookup.homology.imported import import_biomart
from orthovec.schemas.errors import Unavailable
from orthovec.schemas.tables import (
    CELLTYPE_CORRESPONDENCE,
    CONSERVED_MARKERS,
    GENE_CONSERVATION,
    MAPPING,
    read_table,
    write_table,
)
from tests.conftest import shared_file

pytestmark = pytest.mark.usefixtures("umap_compiled")  # tests/conftest.py: pynndescent compiled once

ENDOTHELIAL = "endothelial cell"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Human and mouse tiny files, a rat that is the mouse file relabelled, and human→mouse / human→rat tables."""
    base = tmp_path_factory.mktemp("integrate_inputs")
    mapping = import_biomart(shared_file("scrna/baron_human2mouse_ensembl.csv.gz"), "human", "mouse")
    rat = mapping.set_column(mapping.schema.get_field_index("species_b"), "species_b", pa.array(["rat"] * len(mapping)))
    paths = {
        "human": shared_file("scrna/tiny/baron_human_tiny.h5ad"),
        "mouse": shared_file("scrna/tiny/baron_mouse_tiny.h5ad"),
        "rat": base / "rat.h5ad",
        "human__mouse": write_table(mapping, base / "human__mouse.parquet", MAPPING, {"source": "ensembl test"}),
        "human__rat": write_table(rat, base / "human__rat.parquet", MAPPING, {"source": "relabelled"}),
    }
    mouse = ad.read_h5ad(paths["mouse"])
    mouse.obs_names = [f"rat-{name}" for name in mouse.obs_names]
    mouse.write_h5ad(paths["rat"])
    return paths


@pytest.fixture(scope="module")
def run(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("integrate_run") / "out"
    args = ["integrate", "--mapping", str(inputs["human__mouse"]), "--mapping", str(inputs["human__rat"])]
    for species in ("human", "mouse", "rat"):
        args += ["--adata", f"{species}={inputs[species]}"]
    return out, CliRunner().invoke(main, [*args, "--out", str(out), "--format", "json"])


def test_three_species_run_writes_every_output(run: tuple[Path, Result]) -> None:
    out, result = run
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert any("marker" in n for n in names) and any("correspond" in n for n in names)
    for png in ("umap_species.png", "umap_celltype.png", "celltype_agreement.png", "celltype_correspondence.png"):
        assert (out / png).stat().st_size > 10_000
    assert (out / "markers_dotplot.png").stat().st_size > 10_000
    assert not list(out.parent.glob(".out.*"))  # no staging left behind
    shared = ad.read_h5ad(out / "shared.h5ad")
    assert list(shared.obs["species"].cat.categories) == ["human", "mouse", "rat"]
    assert "counts" in shared.layers and "X_pca_harmony" in shared.obsm and "leiden" in shared.obs
    assert shared.X.dtype == "float32" and shared.obsm["X_pca"].dtype == "float32"


def test_metrics_keep_their_keys_and_record_mapping_features_and_correction(
    run: tuple[Path, Result], inputs: dict[str, Path]
) -> None:
    out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    old_keys = {"celltype_asw", "species_asw", "ilisi", "clisi", "ari", "nmi", "graph_connectivity", "label_transfer"}
    assert old_keys | {"alcs", "overall", "mapping", "features", "correction"} <= set(metrics)
    assert len(metrics["label_transfer"]) == 6  # every ordered pair of three species
    assert 0 <= metrics["alcs"] <= 1 and 0 <= metrics["overall"] <= 1
    # 10 shared cell types: chance is ~0.1; pancreas types are easy to transfer.
    assert min(metrics["label_transfer"].values()) > 0.5
    recorded = {m["name"]: m for m in metrics["mapping"]}
    assert set(recorded) == {"human__mouse.parquet", "human__rat.parquet"}
    assert recorded["human__rat.parquet"]["provenance"] == {"source": "relabelled"}
    assert recorded["human__mouse.parquet"]["species_pairs"] == ["human->mouse"]
    assert len(recorded["human__mouse.parquet"]["sha256"]) == 64
    assert metrics["features"]["kind"] == "one2one" and metrics["features"]["reference"] == "human"
    assert metrics["correction"]["method"] == "harmony" and metrics["correction"]["embedding"] == "X_pca_harmony"
    shared = ad.read_h5ad(out / "shared.h5ad", backed="r")
    record = json.loads(shared.uns["orthovec"]["record"])
    assert record["mapping"] == metrics["mapping"] and record["correction"] == metrics["correction"]
    assert json.loads(shared.uns["orthovec"]["mapping"])[1]["name"] == "human__rat.parquet"


def test_correspondence_pairs_the_same_cell_types_and_shows_cell_counts(run: tuple[Path, Result]) -> None:
    out, _ = run
    table = read_table(out / "correspondence.parquet", CELLTYPE_CORRESPONDENCE).to_pandas()
    assert set(zip(table["species_a"], table["species_b"], strict=True)) == {
        ("human", "mouse"),
        ("human", "rat"),
        ("mouse", "rat"),
    }
    human_mouse = table[(table["species_a"] == "human") & (table["species_b"] == "mouse")]
    best = human_mouse[human_mouse["is_mutual_best"]]
    agree = (best["cell_type_a"] == best["cell_type_b"]).sum()
    assert agree >= 7, best[["cell_type_a", "cell_type_b", "score"]]  # of 10 shared types
    endothelial = human_mouse[human_mouse["cell_type_a"] == ENDOTHELIAL].set_index("cell_type_b")
    assert endothelial["score"].idxmax() == ENDOTHELIAL and endothelial["n_cells_a"].iloc[0] == 40


def test_conserved_markers_are_markers_in_every_species(run: tuple[Path, Result]) -> None:
    out, _ = run
    markers = read_table(out / "markers.parquet", CONSERVED_MARKERS).to_pandas()
    assert set(markers["species"]) == {"human", "mouse", "rat"}
    top = markers[(markers["cell_type"] == ENDOTHELIAL) & (markers["conserved_rank"] <= 5)]
    assert {"PLVAP", "PECAM1", "ENG"} & set(top["feature"])  # textbook endothelial markers
    assert (top["score"] >= top["conserved_score"] - 1e-6).all()  # the conserved score is the weakest species'
    mouse_names = top.loc[top["species"] == "mouse", "gene"]
    assert all(name[0].isupper() and name[1:] == name[1:].lower() for name in mouse_names if name.isalpha())


def test_gene_conservation_sets_sequence_beside_expression(run: tuple[Path, Result]) -> None:
    out, _ = run
    table = read_table(out / "conservation.parquet", GENE_CONSERVATION)
    assert set(pc.unique(table["species"]).to_pylist()) == {"mouse", "rat"}
    frame = table.to_pandas()
    mouse = frame[frame["species"] == "mouse"]
    assert mouse["n_cell_types"].iloc[0] == 9  # shared types with ≥ 3 cells in each (human has 2 Schwann cells)
    assert mouse["expression_correlation"].median() > 0.3  # orthologs mostly keep their expression pattern
    rat = frame[frame["species"] == "rat"].set_index("feature")["expression_correlation"]
    pd.testing.assert_series_equal(mouse.set_index("feature")["expression_correlation"], rat)  # rat is a copy


def test_a_failed_rerun_leaves_the_previous_result_whole(
    run: tuple[Path, Result], inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while writing shared.h5ad: one message, the earlier result untouched, no mixed files."""
    out = tmp_path / "out"
    shutil.copytree(run[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(self: ad.AnnData, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"\x89HDF partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", full_disk)
    data = {name: ad.read_h5ad(inputs[name]) for name in ("human", "mouse")}
    with pytest.raises(Unavailable, match=r"No space left.*previous result, if any, is unchanged"):
        integrate_species(data, [inputs["human__mouse"]], out, IntegrateConfig())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_scanvi_sees_one_species_labels_and_records_it(inputs: dict[str, Path]) -> None:
    """scANVI end to end on the tiny files (2 + 2 epochs: the plumbing, not the quality, which the README measures)."""
    pytest.importorskip("scvi")
    from orthovec.integrate.features import build_shared
    from orthovec.integrate.inputs import species_counts
    from orthovec.integrate.mappings import load_mappings
    from orthovec.integrate.process import ProcessConfig, process

    counts = {s: species_counts(s, ad.read_h5ad(inputs[s])) for s in ("human", "mouse")}
    mapping, _, _ = load_mappings([inputs["human__mouse"]], {s: c.gene_names for s, c in counts.items()}, "human")
    shared, _ = build_shared(counts, mapping)
    config = ProcessConfig(correct="scanvi", max_epochs=2, scanvi_epochs=2, scanvi_labels_from="mouse")
    record = process(shared, config, "cell_ontology_class")
    assert record["embedding"] == "X_scanvi" and record["scanvi_labels_from"] == "mouse"
    assert record["scvi_epochs"] == 2 and shared.obsm["X_scanvi"].shape == (shared.n_obs, 30)


def test_three_species_share_one_group_space_through_the_groups_table(inputs: dict[str, Path], tmp_path: Path) -> None:
    """`orthovec map A B C`'s groups__A__B__C.parquet joins all three species at once (issue 22.4)."""
    from orthovec.lookup.homology.mapping import write_table_groups
    from orthovec.schemas.atlas import Atlas

    atlas = Atlas(tmp_path / "atlas")
    tables = {("human", s): read_table(inputs[f"human__{s}"], MAPPING) for s in ("mouse", "rat")}
    write_table_groups(atlas, "ensembl", ["human", "mouse", "rat"], tables)
    groups = atlas.multi_mapping("ensembl", ["human", "mouse", "rat"])
    args = ["integrate", "--mapping", str(groups), "--features", "groups", "--out", str(tmp_path / "out")]
    for species in ("human", "mouse", "rat"):
        args += ["--adata", f"{species}={inputs[species]}"]
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mapping"][0]["kind"] == "homology_groups" and metrics["features"]["kind"] == "groups"
    assert metrics["n_features"] > 1000  # the tiny files hold 1,592 one-to-one orthologs
    assert min(metrics["label_transfer"].values()) > 0.5  # 10 shared cell types: chance is ~0.1
    shared = ad.read_h5ad(tmp_path / "out" / "shared.h5ad", backed="r")
    assert (shared.var["gene_mouse"] == shared.var["gene_rat"]).all()  # rat is the mouse file relabelled
    assert shared.var[["gene_human", "gene_mouse"]].map(len).gt(0).all(axis=None)  # every group in every species


def test_a_groups_table_makes_group_features_only(inputs: dict[str, Path], tmp_path: Path) -> None:
    from orthovec.lookup.homology.mapping import write_table_groups
    from orthovec.schemas.atlas import Atlas

    atlas = Atlas(tmp_path / "atlas")
    tables = {("human", s): read_table(inputs[f"human__{s}"], MAPPING) for s in ("mouse", "rat")}
    write_table_groups(atlas, "ensembl", ["human", "mouse", "rat"], tables)
    args = ["integrate", "--mapping", str(atlas.multi_mapping("ensembl", ["human", "mouse", "rat"]))]
    for species in ("human", "mouse"):
        args += ["--adata", f"{species}={inputs[species]}"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--features one2one: a multi-species homology-groups table" in result.output
