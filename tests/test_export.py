"""Exports read back the way their consumers read them: SAMap's BLAST tables, SATURN's torch dict, BioMart CSV."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.lookup.homology.imported import import_biomart
from orthovec.schemas.tables import GENES, MAPPING, read_table, write_table
from tests.conftest import shared_file

FROG = "xenopus_tropicalis"


@pytest.fixture(scope="module")
def aligned_atlas(demo_atlas: Path) -> Path:
    """The demo atlas (human + frog, tiny random model): genes, real MMseqs2 alignments, a fused map."""
    return demo_atlas


@pytest.fixture(scope="module")
def atlas(demo_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same atlas without alignments: genes and an embedding-only mapping."""
    atlas = tmp_path_factory.mktemp("export") / "atlas"
    shutil.copytree(demo_atlas, atlas)
    shutil.rmtree(atlas / "alignments")
    result = CliRunner().invoke(main, ["map", "human", FROG, "--evidence", "embedding", "--atlas", str(atlas)])
    assert result.exit_code == 0, result.output
    return atlas


def _genes(atlas: Path, species: str) -> pd.DataFrame:
    return read_table(next((atlas / "species" / species / "genes").glob("*.parquet")), GENES).to_pandas()


def _read_like_samap(path: Path) -> pd.DataFrame:
    """SAMap's `_calculate_blast_graph`: no header, query as index, columns named by position, e-value filter."""
    table = pd.read_csv(path, sep="\t", header=None, index_col=0)
    table.columns = table.columns.astype("<U100")
    return table[table["10"] <= 1e-6]


def _samap(atlas: Path, out: Path) -> str:
    ids = ["--id", "human=hs", "--id", f"{FROG}=xt"]
    args = ["export", "samap", "--atlas", str(atlas), "--species", "human", "--species", FROG, *ids, "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_samap_maps_from_alignments_carry_real_evalues_and_bits(aligned_atlas: Path, tmp_path: Path) -> None:
    output = _samap(aligned_atlas, tmp_path / "maps")
    assert f"alignments (human__{FROG}.parquet)" in output
    forward = _read_like_samap(tmp_path / "maps" / "hsxt" / "hs_to_xt.txt")
    backward = _read_like_samap(tmp_path / "maps" / "hsxt" / "xt_to_hs.txt")
    genes = {species: set(_genes(aligned_atlas, species)["gene_symbol"]) for species in ("human", FROG)}
    assert set(forward.index) <= genes["human"] and set(forward["1"]) <= genes[FROG]
    assert set(backward.index) <= genes[FROG] and set(backward["1"]) <= genes["human"]
    assert len(forward) > 100 and (forward["11"] > 30).all() and forward["2"].between(0, 100).all()
    # Orthologs align best: most human genes' best frog hit carries the same symbol (case aside).
    best = forward.reset_index().sort_values("11", ascending=False).drop_duplicates(0)
    assert (best[0].str.lower() == best["1"].str.lower()).mean() > 0.8


def test_samap_maps_fall_back_to_embedding_hits(atlas: Path, tmp_path: Path) -> None:
    output = _samap(atlas, tmp_path / "maps")
    assert "embedding mapping (" in output
    forward = _read_like_samap(tmp_path / "maps" / "hsxt" / "hs_to_xt.txt")
    mapping = read_table(next((atlas / "mappings").glob(f"*/human__{FROG}.parquet")), MAPPING)
    top_k = mapping.filter(pc.and_(pc.is_valid(mapping["rank_ab"]), pc.greater(mapping["score"], 0)))
    assert len(forward) == top_k.num_rows  # every hit passes SAMap's e-value filter (e-value written as 0)
    np.testing.assert_allclose(np.sort(forward["11"].to_numpy()), np.sort(top_k["score"].to_numpy()), rtol=1e-6)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([], f"--id {FROG}={FROG}: {FROG}'s SAMap id must be letters, digits and '-' only"),  # '_' in the name
        (["--id", "human=../../x"], "--id human=../../x: human's SAMap id must be"),  # issue 19.16: out of --out
        (["--id", "human=hs", "--id", f"{FROG}=xt", "--id", "rat=rn"], "--id rat=rn: gives an id for rat"),
    ],
)
def test_samap_ids_are_file_name_parts_of_the_species_exported(
    atlas: Path, tmp_path: Path, ids: list[str], message: str
) -> None:
    out = tmp_path / "a" / "b" / "maps"
    args = ["export", "samap", "--atlas", str(atlas), "--species", "human", "--species", FROG, *ids, "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert [p.name for p in tmp_path.rglob("*")] == []


def test_an_export_over_its_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    """Issue 19.2: `export biomart M --out M` replaced the mapping Parquet with CSV."""
    original = import_biomart(shared_file("scrna/baron_human2mouse_ensembl.csv.gz"), "human", "mouse")
    mapping = write_table(original, tmp_path / "human__mouse.parquet", MAPPING, {})
    before = mapping.read_bytes()
    for out in (mapping, tmp_path / "link.parquet"):
        if out != mapping:
            out.symlink_to(mapping)
        result = CliRunner().invoke(main, ["export", "biomart", str(mapping), "--out", str(out)])
        assert result.exit_code == 2 and f"--out {out}: is also an input ({mapping})" in result.output
    assert mapping.read_bytes() == before


def test_saturn_file_is_the_torch_dict_saturn_loads(atlas: Path, tmp_path: Path) -> None:
    out = tmp_path / "human.torch"
    args = ["export", "saturn", "--atlas", str(atlas), "--species", "human", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    embeddings = torch.load(out)
    genes = _genes(atlas, "human")
    assert set(embeddings) == set(genes["gene_symbol"])
    first = genes.iloc[0]
    assert embeddings[first["gene_symbol"]].dtype == torch.float32 and embeddings[first["gene_symbol"]].ndim == 1
    np.testing.assert_array_equal(embeddings[first["gene_symbol"]].numpy(), first["embedding"])


def test_biomart_csv_round_trips_through_pandas_and_the_importer(tmp_path: Path) -> None:
    original = import_biomart(shared_file("scrna/baron_human2mouse_ensembl.csv.gz"), "human", "mouse")
    mapping = write_table(original, tmp_path / "human__mouse.parquet", MAPPING, {})
    out = tmp_path / "human_mouse.csv"
    result = CliRunner().invoke(main, ["export", "biomart", str(mapping), "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"homology rows": original.num_rows, "path": str(out)}]
    frame = pd.read_csv(out)
    assert {"Gene name", "Mouse gene name", "Mouse homology type", "Mouse orthology confidence [0 low, 1 high]"} <= set(
        frame.columns
    )
    assert set(frame.loc[frame["Gene name"] == "INS", "Mouse gene name"]) == {"Ins1", "Ins2"}
    reimported = import_biomart(out, "human", "mouse")

    def pairs(table: pa.Table) -> set[tuple[str, str, str]]:
        # BioMart has one "ortholog_one2many" for both directions, so one2many and many2one read back alike.
        columns = (table[name].to_pylist() for name in ("gene_id_a", "gene_id_b", "relation"))
        return {(a, b, relation.replace("many2one", "one2many")) for a, b, relation in zip(*columns, strict=True)}

    assert pairs(reimported) == pairs(original) and reimported.num_rows == original.num_rows


def test_biomart_from_a_fused_orthovec_mapping_carries_alignment_identity(aligned_atlas: Path, tmp_path: Path) -> None:
    mapping = next((aligned_atlas / "mappings").glob(f"*/human__{FROG}.parquet"))
    out = tmp_path / "human_frog.csv"
    assert CliRunner().invoke(main, ["export", "biomart", str(mapping), "--out", str(out)]).exit_code == 0
    frame = pd.read_csv(out)
    identity = frame["%id. target Xenopus tropicalis gene identical to query gene"]
    assert frame["Xenopus tropicalis homology type"].str.startswith("ortholog_").all()
    assert identity.notna().mean() > 0.5 and identity.dropna().between(0, 100).all()
