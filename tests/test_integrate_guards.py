"""What `integrate` refuses before any work, and what it never does: replace files it did not write,
write over its inputs, lose a warning, or read data as markup (issue 19 items 1, 9, 11; issue 21)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

import orthovec as ov
from orthovec.cli import main
from orthovec.core.logs import DataWarning
from orthovec.lookup.homology.imported import import_pairs
from orthovec.schemas.errors import NotFound
from orthovec.schemas.tables import MAPPING, write_table

pytestmark = pytest.mark.usefixtures("umap_compiled")  # tests/conftest.py: pynndescent compiled once

MARKUP = "[red]RED[/red]"
GENES = ["INS", "GCG", "SST", "PPY", "KRT19", "SPP1", "COL1A1", MARKUP, "[/]"]


def _cells(genes: list[str], n_per_type: int, types: list[str], seed: int, scale: float = 1.0) -> ad.AnnData:
    """Counts where each cell type expresses its own third of the genes strongly (transfer is easy)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(types, n_per_type)
    rate = np.full((len(labels), len(genes)), 1.0)
    for index, cell_type in enumerate(types):
        rate[labels == cell_type, index * 3 : index * 3 + 3] = 30.0
    counts = rng.poisson(rate).astype(np.float32) * scale
    obs = pd.DataFrame({"cell_ontology_class": labels}, index=[f"{seed}-{i}" for i in range(len(labels))])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small species whose gene names hold rich markup, and their one-to-one table."""
    base = tmp_path_factory.mktemp("guards")
    mouse_genes = [g.capitalize() if g.isalnum() else g for g in GENES[:-1]] + ["Onlymouse"]
    human = _cells(GENES, 12, ["alpha", "beta", "delta"], seed=1)
    mouse = _cells(mouse_genes, 12, ["alpha", "beta", "delta"], seed=2)
    paths = {"human": base / "human.h5ad", "mouse": base / "mouse.h5ad"}
    human.write_h5ad(paths["human"])
    mouse.write_h5ad(paths["mouse"])
    pairs = base / "pairs.csv"
    pairs.write_text("a,b\n" + "".join(f'"{h}","{m}"\n' for h, m in zip(GENES[:-1], mouse_genes[:-1], strict=True)))
    paths["mapping"] = write_table(import_pairs(pairs, "human", "mouse"), base / "hm.parquet", MAPPING, {})
    return paths


def _integrate(small: dict[str, Path], out: Path, *extra: str, human: Path | None = None) -> tuple[int, str]:
    args = ["integrate", "--mapping", str(small["mapping"]), "--adata", f"human={human or small['human']}"]
    args += ["--adata", f"mouse={small['mouse']}", "--out", str(out), "--format", "tsv", *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_markup_in_gene_names_is_data_and_only_listed_files_are_replaced(
    small: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 19.9 (rich markup in var names) and 19.1 (a later run replaces only what the manifest lists)."""
    out = tmp_path / "out"
    code, output = _integrate(small, out)
    assert code == 0, output
    assert "[/]" in output  # the lost human-only gene is named as it is, in the gene report line
    shared = ad.read_h5ad(out / "shared.h5ad")
    assert MARKUP in shared.var_names and shared.var.loc[MARKUP, "gene_mouse"] == MARKUP
    listed = (out / "orthovec-outputs.json").read_text()
    assert '"shared.h5ad"' in listed and '"metrics.json"' in listed
    (out / "notes.txt").write_text("mine")
    code, output = _integrate(small, out)
    assert code == 2 and "holds files orthovec did not write (notes.txt" in output
    assert (out / "notes.txt").read_text() == "mine" and (out / "shared.h5ad").is_file()


def test_an_input_inside_the_output_directory_is_refused_and_kept(small: dict[str, Path], tmp_path: Path) -> None:
    """Issue 19.1: `--out good2` holding the human .h5ad read the input, then replaced the directory."""
    out = tmp_path / "good2"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # what the old guard took for a previous result
    inside = out / "human.h5ad"
    inside.write_bytes(small["human"].read_bytes())
    code, output = _integrate(small, out, human=inside)
    assert code == 2 and f"--out {out}: holds the input {inside}" in output and "Traceback" not in output
    assert inside.read_bytes() == small["human"].read_bytes()


def test_float_counts_are_a_data_warning_from_the_python_api(small: dict[str, Path], tmp_path: Path) -> None:
    human = ad.read_h5ad(small["human"])
    human.X = human.X * 0.5  # normalised-looking values
    with pytest.warns(UserWarning, match="human: X holds non-integer values") as caught:
        ov.integrate_species({"human": human, "mouse": small["mouse"]}, [small["mapping"]], tmp_path / "out")
    # a UserWarning that Python shows by default, of orthovec's own kind so users can filter it (issue 21)
    assert any(isinstance(w.message, DataWarning) for w in caught if "non-integer" in str(w.message))


def test_a_species_the_mapping_lacks_is_named_as_each_front_end_spells_it(
    small: dict[str, Path], tmp_path: Path
) -> None:
    args = ["integrate", "--mapping", str(small["mapping"]), "--adata", f"human={small['human']}"]
    result = CliRunner().invoke(main, [*args, "--adata", f"frog={small['mouse']}", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--adata: species frog not in the mapping (it has human, mouse)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
    with pytest.raises(NotFound, match=r"^adatas: species frog not in the mapping"):
        ov.integrate_species({"human": small["human"], "frog": small["mouse"]}, [small["mapping"]], tmp_path / "o")


@pytest.mark.parametrize(
    ("human", "message"),
    [
        (lambda: _cells(GENES, 12, ["acinar", "epsilon"], seed=3), "human and mouse share no cell type"),
        (lambda: _cells(GENES, 1, ["alpha"], seed=3), "human: the AnnData has 1 cell; integration needs at least 10"),
    ],
)
def test_impossible_integrations_are_refused_before_any_work(
    small: dict[str, Path], tmp_path: Path, human: object, message: str
) -> None:
    """Issue 19.11: no shared cell type (a traceback after ~20 s) and a one-cell AnnData (PCA with 0 components)."""
    path = tmp_path / "human.h5ad"
    human().write_h5ad(path)  # type: ignore[operator]
    code, output = _integrate(small, tmp_path / "out", human=path)
    assert code == 2 and message in output and "Traceback" not in output
    assert "normalise" not in output  # refused before processing began
    assert not (tmp_path / "out").exists()


def test_a_covariate_that_is_not_a_column_is_named(small: dict[str, Path], tmp_path: Path) -> None:
    from orthovec.integrate.process import ProcessConfig
    from orthovec.integrate.run import IntegrateConfig

    config = IntegrateConfig(process=ProcessConfig(correct="harmony", covariates=("donor",)))
    data = {"human": small["human"], "mouse": small["mouse"]}
    with pytest.raises(NotFound, match=r"covariates='donor': human: no obs column 'donor'"):
        ov.integrate_species(data, [small["mapping"]], tmp_path / "out", config=config)
