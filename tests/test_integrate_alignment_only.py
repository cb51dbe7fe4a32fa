"""Species registered for alignment only (`index --no-embed`: no model, no weights) reach `integrate`
through their MMseqs2 mapping table: the shipped demo proteomes, aligned and mapped for real, join
single-cell counts whose cell types are told apart by orthologous genes."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

import orthovec as ov
from orthovec.cli import main
from orthovec.lookup.homology.mapping import MappingParams
from orthovec.schemas.tables import MAPPING, read_table

pytestmark = pytest.mark.usefixtures("umap_compiled")  # tests/conftest.py: pynndescent compiled once

EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"
HUMAN, FROG = "human", "xenopus_tropicalis"
TYPES = ["alpha", "beta", "delta"]


def _cells(genes: list[str], seed: int) -> ad.AnnData:
    """20 cells per type; type i expresses the i-th third of `genes` strongly, so types are told apart by
    orthologous genes in both species (the genes are given in ortholog order)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(TYPES, 20)
    rate = np.full((len(labels), len(genes)), 1.0)
    third = len(genes) // len(TYPES)
    for index, cell_type in enumerate(TYPES):
        rate[labels == cell_type, index * third : (index + 1) * third] = 20.0
    obs = pd.DataFrame({"cell_ontology_class": labels}, index=[f"{seed}-{i}" for i in range(len(labels))])
    return ad.AnnData(X=sp.csr_matrix(rng.poisson(rate).astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both demo species indexed with embed=False, aligned with MMseqs2 and mapped on alignment evidence."""
    base = tmp_path_factory.mktemp("alignment_only")
    atlas = base / "atlas"
    for species, fasta in ((HUMAN, "human_demo.fasta.gz"), (FROG, "xenopus_tropicalis_demo.fasta.gz")):
        result = ov.index_proteome(EXAMPLES / fasta, species, atlas=atlas, embed=False)
        assert result.model is None  # registered for alignment only: no model anywhere
    ov.align_species(HUMAN, FROG, atlas=atlas, threads=1)
    (summary,) = ov.map_species([HUMAN, FROG], atlas=atlas, params=MappingParams(evidence="alignment"))
    assert summary.evidence == "alignment"
    mapping = Path(summary.path)
    table = read_table(mapping, MAPPING)
    one2one = table.filter(pc.equal(table["relation"], "one2one"))
    human_genes = one2one["gene_symbol_a"].to_pylist()[:60]
    frog_genes = one2one["gene_symbol_b"].to_pylist()[:60]
    paths = {"mapping": mapping, HUMAN: base / "human.h5ad", FROG: base / "frog.h5ad"}
    _cells(human_genes, seed=1).write_h5ad(paths[HUMAN])
    _cells(frog_genes, seed=2).write_h5ad(paths[FROG])
    return paths


def test_alignment_only_species_integrate_through_their_alignment_mapping(
    aligned: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["integrate", "--mapping", str(aligned["mapping"]), "--adata", f"{HUMAN}={aligned[HUMAN]}"]
    args += ["--adata", f"{FROG}={aligned[FROG]}", "--correct", "none", "--out", str(out), "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_features"] == 60  # every ortholog pair the counts hold became one feature
    assert metrics["mapping"][0]["path"] == str(aligned["mapping"])
    assert min(metrics["label_transfer"].values()) > 0.9  # types share their orthologs' expression
    shared = ad.read_h5ad(out / "shared.h5ad")
    pairs = read_table(aligned["mapping"], MAPPING).to_pandas().query("relation == 'one2one'")
    mapped = dict(zip(pairs["gene_symbol_a"], pairs["gene_symbol_b"], strict=True))
    # each feature joins a human gene to its MMseqs2 one-to-one partner, and the evidence (BSR) is kept
    assert all(mapped[h] == f for h, f in zip(shared.var_names, shared.var[f"gene_{FROG}"], strict=True))
    assert shared.var[f"score_{FROG}"].between(0, 1).all() and shared.var[f"identity_{FROG}"].notna().all()
