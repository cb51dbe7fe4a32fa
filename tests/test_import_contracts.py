"""The floors and rooms stay what the design says they are, checked on the source's imports.

Ground floor (`orthovec.core`, `orthovec.schemas`, the shared `orthovec.embedding` layer) imports
no stage and nothing above; a stage's library modules import no other stage and never the top
floor (`orthovec.api`, `orthovec.cli`, `orthovec.demo`, `orthovec.indexing`, `orthovec.build`);
inside `lookup/`, the store knows nothing of homology or serving. Imports are read with `ast`, so
a lazy import inside a function counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Repository folder -> the package it installs as (pyproject's package-dir).
FOLDERS = {
    "orthovec": "orthovec",
    "indexer": "orthovec.indexer",
    "lookup": "orthovec.lookup",
    "integrate": "orthovec.integrate",
    "schemas": "orthovec.schemas",
}
GROUND = ("orthovec.core", "orthovec.schemas", "orthovec.embedding")
STAGES = ("orthovec.indexer", "orthovec.lookup", "orthovec.integrate")
TOP = ("orthovec.api", "orthovec.cli", "orthovec.demo", "orthovec.indexing", "orthovec.build")


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    package = FOLDERS[relative.parts[0]]
    parts = [*package.split("."), *relative.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _orthovec_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "orthovec" or name.startswith("orthovec.")}


def _modules() -> dict[str, set[str]]:
    modules = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            modules[_module_name(path)] = _orthovec_imports(path)
    return modules


MODULES = _modules()


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


#: Crossings that exist today and are being taken out (issue 21); each entry names what replaces
#: it. The list may only shrink: an entry that no longer crosses fails `test_known_crossings_still_exist`.
KNOWN_CROSSINGS: set[str] = set()


def _crossings(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in MODULES.items()
        if _within(module, importers)
        for target in targets
        if _within(target, forbidden)
    )


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [crossing for crossing in _crossings(importers, forbidden) if crossing not in KNOWN_CROSSINGS]


def test_the_source_tree_is_found() -> None:
    assert "orthovec.lookup.store" in MODULES
    assert "orthovec.core.files" in MODULES["orthovec.schemas.tables"]


def test_the_ground_floor_imports_no_stage_and_nothing_above() -> None:
    assert _violations(GROUND, STAGES + TOP) == []


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage_and_never_the_top(stage: str) -> None:
    others = tuple(s for s in STAGES if s != stage)
    assert _violations((stage,), others + TOP) == []


def test_known_crossings_still_exist() -> None:
    every = set(_crossings(STAGES, STAGES + TOP))
    assert sorted(KNOWN_CROSSINGS - every) == []


def test_the_store_knows_nothing_of_homology_or_serving() -> None:
    store = ("orthovec.lookup.store",)
    assert _violations(store, ("orthovec.lookup.homology", "orthovec.lookup.serve", "orthovec.lookup.homologs")) == []


def test_homology_evidence_does_not_reach_into_the_server() -> None:
    assert _violations(("orthovec.lookup.homology",), ("orthovec.lookup.serve",)) == []
