"""The package as users import it: one name in site-packages, light stage imports, the `ov.*` API."""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import orthovec as ov

pytestmark = pytest.mark.usefixtures("umap_compiled")  # tests/conftest.py: pynndescent compiled once


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
    hits = ov.query("ETF1", "human", to=["xenopus_tropicalis"], k=3, atlas=demo_atlas).hits
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].gene_symbol == "etf1" and hits[0].is_rbh
    mapping = ov.read_mapping(demo_atlas, "human", "xenopus_tropicalis")
    assert mapping.num_rows > 150 and {"gene_id_a", "gene_id_b", "is_one2one_greedy"} <= set(mapping.column_names)


def test_api_errors_are_typed_user_errors(demo_atlas: Path) -> None:
    with pytest.raises(ov.NotFound, match="No gene 'NOPE1' in human"):
        ov.query("NOPE1", "human", atlas=demo_atlas)
    with pytest.raises(ov.UserError, match="give both species"):
        ov.read_mapping(demo_atlas, "human")


API = ("index_proteome", "align_species", "map_species", "query", "read_mapping", "integrate_species")


def _documented_parameters(doc: str) -> list[str]:
    """The names of a numpydoc `Parameters` section (scanpy's layout: the name alone on its line)."""
    section = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, flags=re.M | re.S)
    assert section, "no Parameters section"
    return re.findall(r"^(\w+)$", section.group(1), flags=re.M)


@pytest.mark.parametrize("name", API)
def test_every_api_function_documents_exactly_its_parameters_in_order(name: str) -> None:
    function = getattr(ov, name)
    documented = _documented_parameters(inspect.getdoc(function) or "")
    assert documented == list(inspect.signature(function).parameters), name


def _written_patterns(text: str) -> list[str]:
    """Glob patterns of the atlas paths a docstring names: `ATLAS/species/<species>/{a, b/}` gives
    `species/*/a` and `species/*/b/*` (a name ending in / stands for everything under it)."""
    patterns = []
    for span in re.findall(r"`ATLAS/([^`]+)`", text):
        head, _, rest = span.partition("{")
        alternatives = [part.strip() for part in rest.rstrip("}").split(",")] if rest else [""]
        for alternative in alternatives:
            path = re.sub(r"<[^>]+>", "*", head + alternative)
            patterns.append(path + "*" if path.endswith("/") else path)
    return patterns


def _files(atlas: Path) -> dict[str, str]:
    """Every file of an atlas with a hash of its bytes; hidden ones (locks, staging) are not results.

    Bytes, not times: opening the embedded Qdrant store, even read-only, rewrites 14 of its files
    with the same bytes when it closes.
    """
    return {
        path.relative_to(atlas).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in atlas.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(atlas).parts)
    }


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {path for path, digest in after.items() if before.get(path) != digest}


def test_the_files_each_api_function_writes_are_the_files_its_docstring_names(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """Run each function on a fresh atlas and compare what it wrote with what its docstring says."""
    atlas = tmp_path / "atlas"
    examples = Path(ov.__file__).parent / "examples"
    steps = [
        (
            "index_proteome",
            lambda: ov.index_proteome(examples / "human_demo.fasta.gz", "human", atlas=atlas, weights=tiny_weights),
        ),
        (
            "index_proteome",
            lambda: ov.index_proteome(
                examples / "xenopus_tropicalis_demo.fasta.gz", "frog", atlas=atlas, weights=tiny_weights
            ),
        ),
        ("align_species", lambda: ov.align_species("human", "frog", atlas=atlas, threads=1)),
        ("map_species", lambda: ov.map_species(["human", "frog"], atlas=atlas)),
        ("query", lambda: ov.query("ETF1", "human", to=["frog"], atlas=atlas)),
        ("read_mapping", lambda: ov.read_mapping(atlas, "human", "frog")),
    ]
    for name, run in steps:
        before = _files(atlas) if atlas.exists() else {}
        run()
        written = _changed(before, _files(atlas))
        doc = " ".join((inspect.getdoc(getattr(ov, name)) or "").split())
        # Every atlas path the docstring names may be written; those of its "Writes ..." sentence must be.
        promised = " ".join(re.findall(r"(?:^|(?<=\. ))Writes\b.*?\.(?= [A-Z`]|$)", doc))
        patterns = _written_patterns(doc)
        unnamed = {path for path in written if not any(fnmatch.fnmatchcase(path, p) for p in patterns)}
        assert not unnamed, f"{name} wrote files its docstring does not name: {sorted(unnamed)[:5]}"
        if not written:
            assert "writes nothing" in doc, f"{name} writes nothing; its docstring should say so"
        else:
            assert promised, f"{name} writes files; its docstring should say which in a 'Writes ...' sentence"
        unused = [p for p in _written_patterns(promised) if not any(fnmatch.fnmatchcase(path, p) for path in written)]
        assert not unused, f"{name}'s docstring promises files it did not write: {unused}"


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
