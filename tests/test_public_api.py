"""The package as users import it: one name in site-packages, light stage imports, the `ov.*` API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import orthovec as ov


def _modules_after(statement: str, cwd: Path) -> dict[str, object]:
    """Runs `statement` in a fresh interpreter (outside the repository) and reports what it imported."""
    probe = (
        f"{statement}\nimport json, sys, importlib.util\n"
        "print(json.dumps({'loaded': sorted(m for m in ('scanpy', 'torch', 'anndata', 'matplotlib', 'esm') "
        "if m in sys.modules), 'top_level': [n for n in ('schemas', 'lookup', 'indexer', 'integrate') "
        "if importlib.util.find_spec(n) is not None]}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_only_orthovec_is_installed_and_stage_imports_stay_light(tmp_path: Path) -> None:
    found = _modules_after("import orthovec, orthovec.indexer, orthovec.lookup, orthovec.lookup.query", tmp_path)
    assert found == {"loaded": [], "top_level": []}  # no scanpy, no torch; no generic top-level packages


def test_the_cli_module_imports_no_plotting_or_model_code(tmp_path: Path) -> None:
    found = _modules_after("import orthovec.cli", tmp_path)
    assert found["loaded"] == []  # nothing heavy, and matplotlib's backend is left to the caller


def test_query_and_read_mapping_through_the_public_api(demo_atlas: Path) -> None:
    hits = ov.query("ETF1", "human", to=["xenopus_tropicalis"], k=3, atlas=demo_atlas)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].gene_symbol == "etf1" and hits[0].is_rbh
    mapping = ov.read_mapping(demo_atlas, "human", "xenopus_tropicalis")
    assert mapping.num_rows > 150 and {"gene_id_a", "gene_id_b", "is_one2one_greedy"} <= set(mapping.column_names)


def test_api_errors_are_typed_user_errors(demo_atlas: Path) -> None:
    with pytest.raises(ov.NotFound, match="No gene 'NOPE1' in human"):
        ov.query("NOPE1", "human", atlas=demo_atlas)
    with pytest.raises(ov.UserError, match="give both species"):
        ov.read_mapping(demo_atlas, "human")


def test_every_api_function_says_what_it_writes() -> None:
    for name in ("index_proteome", "align_species", "map_species", "query", "read_mapping", "integrate_species"):
        doc = getattr(ov, name).__doc__ or ""
        assert len(doc.split()) > 20, name


def test_a_gene_query_from_the_command_line_loads_no_model_code(demo_atlas: Path, tmp_path: Path) -> None:
    """torch is for sequence queries only: a gene query must not pay its ~2 s import."""
    run_query = (
        "from orthovec.cli import main\n"
        f"main(['query', 'ETF1', '--from', 'human', '--to', 'xenopus_tropicalis', '--atlas', {str(demo_atlas)!r}],"
        " standalone_mode=False)"
    )
    found = _modules_after(run_query, tmp_path)
    assert "torch" not in found["loaded"] and "scanpy" not in found["loaded"]


def test_importing_the_plotting_code_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    probe = "import matplotlib; matplotlib.use('svg'); import orthovec.integrate.plots; print(matplotlib.get_backend())"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "svg"
