"""`orthovec build`: manifest errors name their line; a killed build reruns to the same atlas; a
finished one reruns as a no-op; a changed source redoes only what depends on it."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from orthovec.build.manifest import load_manifest
from orthovec.build.plan import BuildOptions, BuildReport, run_build
from orthovec.cli import main
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import ALIGNMENT, GENES, HOMOLOGY_GROUPS, MAPPING, read_table
from tests.conftest import shared_file
from tests.test_fetch import Reply, Server, server  # noqa: F401 (the local HTTP server fixture)

SPECIES = {"human": "human", "mouse": "mouse", "xenopus": "xenopus_tropicalis"}
RECORDS = 20


def _slice(name: str, out: Path, records: int = RECORDS) -> Path:
    """The first `records` Swiss-Prot records of a species: small, real, and ours to edit."""
    text = gzip.decompress(shared_file(f"proteomes/{name}_sprot2014.fasta.gz").read_bytes()).decode()
    out.write_text(">" + "\n>".join(text.lstrip(">").split("\n>")[:records]) + "\n")
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for species, file_stem in SPECIES.items():
        _slice(file_stem, folder / f"{species}.fa")
    return folder


def _manifest(folder: Path, weights: Path, sources: Path) -> Path:
    """Three species, alignment off: MMseqs2 costs tens of seconds per pair on two shared cores, and
    the align step has its own tests; here the plan's bookkeeping is under test."""
    species = "".join(f'\n[[species]]\nname = "{name}"\nsource = "{sources / name}.fa"\n' for name in SPECIES)
    path = folder / "atlas.toml"
    path.write_text(f'[atlas]\nweights = "{weights}"\nalign = false\n{species}')
    return path


def _build(manifest: Path, atlas: Path, **options: object) -> BuildReport:
    return run_build(load_manifest(manifest), Atlas(atlas), BuildOptions(**options))  # type: ignore[arg-type]


def _status(report: BuildReport) -> dict[str, str]:
    return {outcome.step: outcome.status for outcome in report.outcomes}


# --- the manifest -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n\n[[species]]\nname = "human"\nsorce = "h.fa"\n',
            r"atlas\.toml:6: \[\[species\]\] entry 1: unknown key 'sorce' \(did you mean 'source'\?\)",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n\n[[species]]\nname = "human"\n',
            r"atlas\.toml:4: \[\[species\]\] entry 1: missing 'source'",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "UP000005640"\n'
            '[[species]]\nname = "b"\nsource = "UP12345"\n',
            r"atlas\.toml:8: \[\[species\]\] entry 2: 'UP12345' is not a UniProt proteome id",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "ensembl:Mus musculus"\n',
            r"atlas\.toml:5: .*not an Ensembl source; write ensembl:SPECIES@RELEASE",
        ),
        (
            '[atlas]\nmodle = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:2: \[atlas\]: unknown key 'modle' \(did you mean 'model'\?\)",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\nlayer = "six"\n[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:3: \[atlas\]: 'layer' = 'six' is not valid; expected representation layer",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\npairs = [["a", "mouse"]]\n[[species]]\nname = "a"\n'
            'source = "UP000005640"\n',
            r"atlas\.toml:3: \[atlas\]: pair \['a', 'mouse'\] names 'mouse', which no \[\[species\]\] entry defines",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "missing.fa"\n',
            r"atlas\.toml:5: \[\[species\]\] entry 1: source file 'missing.fa' not found",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "UP000005640"\n'
            '[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:7: \[\[species\]\] entry 2: species 'a' is listed twice",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\nmetric = "cosin"\n[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:3: \[atlas\]: 'metric' = 'cosin' is not valid; expected one of cosine, pearson, csls",
        ),
        ('[atlas]\nmodel = "esm2_t6_8M_UR50D\n', r"atlas\.toml: not valid TOML: .*line 2"),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a__b"\nsource = "UP000005640"\n',
            r"atlas\.toml:4: \[\[species\]\] entry 1: .*'a__b'.*'__' separates the two species",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "UP000005640"\n'
            "taxid = 9999999999\n",
            r"atlas\.toml:6: \[\[species\]\] entry 1: taxid=9999999999: expected an integer >= 1",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\nmargin = nan\n[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:3: \[atlas\]: margin=nan: expected a number >= 0 and <= 1",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\nalign_sensitivity = 100\n'
            '[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:3: \[atlas\]: align_sensitivity=100: expected a number >= 1 and <= 7\.5",
        ),
        (
            '[atlas]\nmodel = "esm2_t6_8M_UR50D"\nmax_evalue = -1\n[[species]]\nname = "a"\nsource = "UP000005640"\n',
            r"atlas\.toml:3: \[atlas\]: max_evalue=-1: expected a number >= 0",
        ),
        (
            '[atlas]\nembed = false\n[[species]]\nname = "a"\nsource = "UP000005640"\nembed = true\n',
            r"atlas\.toml:1: \[atlas\]: give `weights = \"PATH\.pt\"`.*or `embed = false`",
        ),
    ],
    ids=["unknown-key", "missing-field", "bad-uniprot-id", "bad-ensembl", "atlas-typo", "wrong-type",
         "pair-unknown", "missing-file", "duplicate", "metric", "toml-syntax", "pair-separator", "huge-taxid",
         "nan-margin", "sensitivity-range", "negative-evalue", "embedded-species-without-weights"],
)  # fmt: skip
def test_manifest_mistakes_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "atlas.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_manifest(path)


def test_manifest_error_is_one_paragraph_at_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "atlas.toml"
    path.write_text('[atlas]\nmodel = "esm2_t6_8M_UR50D"\n[[species]]\nname = "a"\nsource = "UP1"\n')
    result = CliRunner().invoke(main, ["build", str(path), "--atlas", str(tmp_path / "atlas")])
    assert result.exit_code == 2
    assert "atlas.toml:5" in result.output and "UniProt proteome id" in result.output
    assert "Traceback" not in result.output


def test_manifest_accepts_the_documented_shape(tmp_path: Path, tiny_weights: Path) -> None:
    path = tmp_path / "atlas.toml"
    path.write_text(
        f'[atlas]\nweights = "{tiny_weights}"\npairs = [["human", "mouse"]]\n'
        '[[species]]\nname = "human"\nsource = "UP000005640"\n'
        '[[species]]\nname = "mouse"\nsource = "https://example.org/mouse.fa.gz"\ntaxid = 10090\n'
        '[[species]]\nname = "frog"\nsource = "ensembl:xenopus_tropicalis@112"\n'
    )
    manifest = load_manifest(path)
    assert [(s.name, s.source.kind) for s in manifest.species] == [
        ("human", "uniprot"),
        ("mouse", "url"),
        ("frog", "ensembl"),
    ]
    assert manifest.pairs() == [("human", "mouse")] and manifest.atlas.weights == tiny_weights


# --- building -------------------------------------------------------------------------------------


def _tables(atlas: Path) -> dict[str, pa.Table]:
    """Everything a build produces that users read, sorted so row order cannot hide a difference."""
    tables: dict[str, pa.Table] = {}
    for path in sorted((atlas / "species").glob("*/genes/*.parquet")):
        tables[str(path.relative_to(atlas))] = read_table(path, GENES).select(["gene_id", "embedding"])
    for path in sorted((atlas / "mappings").glob("*/*.parquet")):
        spec = HOMOLOGY_GROUPS if path.name.startswith("groups__") else MAPPING
        table = read_table(path, spec)
        key = "group_id" if spec is HOMOLOGY_GROUPS else "gene_id_a"
        sort = [(key, "ascending")] + ([("gene_id_b", "ascending")] if spec is MAPPING else [])
        tables[str(path.relative_to(atlas))] = table.sort_by(sort)
    return tables


def test_killed_build_reruns_to_the_same_atlas_is_then_a_no_op_and_redoes_only_what_changed(
    tmp_path: Path, tiny_weights: Path, sources: Path
) -> None:
    own_sources = tmp_path / "sources"  # this test edits one
    own_sources.mkdir()
    for name in SPECIES:
        (own_sources / f"{name}.fa").write_bytes((sources / f"{name}.fa").read_bytes())
    manifest = _manifest(tmp_path, tiny_weights, own_sources)
    reference = _build(manifest, tmp_path / "reference", jobs=2)
    assert {s for s, status in _status(reference).items() if status != "ran"} == set()
    assert len(reference.of_kind("map")) == 3 and _status(reference)["groups"] == "ran"

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "orthovec.cli", "build", str(manifest), "--atlas", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "build" / "index-human.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the build never finished indexing its first species"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the build finished before it could be killed"

    resumed = _build(manifest, killed)
    assert _status(resumed)["index:human"] == "up to date"  # work done before the kill is kept
    assert _status(resumed)["map:human__mouse"] == "ran"
    expected, got = _tables(tmp_path / "reference"), _tables(killed)
    # 3 gene tables and 3 mapping tables (random weights without alignment evidence form no homology groups)
    assert sorted(got) == sorted(expected) and len([name for name in got if "groups__" not in name]) == 3 + 3
    for name, table in expected.items():
        assert got[name].equals(table), name

    result = CliRunner().invoke(main, ["build", str(manifest), "--atlas", str(killed)])
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.output
    assert "ran" not in {line.split("│")[2].strip() for line in result.output.splitlines() if line.count("│") > 3}

    _slice(SPECIES["xenopus"], own_sources / "xenopus.fa", records=RECORDS - 5)
    shutil.rmtree(killed / "qdrant")
    plan = _build(manifest, killed, dry_run=True)
    assert _status(plan)["fetch:xenopus"] == "to run" and _status(plan)["index:xenopus"] == "to run"
    assert _status(plan)["map:human__xenopus"] == "to run" and _status(plan)["fetch:human"] == "up to date"
    assert _status(plan)["index:human"] == "to run"  # the store lost its genes: assemble and load again
    assert "store missing" in next(o.reason for o in plan.outcomes if o.step == "index:human")
    status = _status(_build(manifest, killed))
    redone = {step for step, state in status.items() if state == "ran"}
    # human and mouse reload from the embedding cache and reproduce their gene tables, so their pair is kept
    assert redone == {"fetch:xenopus", "proteins:xenopus", "index:human", "index:mouse", "index:xenopus",
                      "map:human__xenopus", "map:mouse__xenopus", "groups"}  # fmt: skip
    genes = read_table(next((killed / "species" / "xenopus" / "genes").glob("*.parquet")), GENES)
    assert genes.num_rows == RECORDS - 5


def test_array_tasks_share_out_the_databases_pairs_and_mappings_once_each(
    tmp_path: Path, tiny_weights: Path, sources: Path
) -> None:
    manifest = _manifest(tmp_path, tiny_weights, sources)
    manifest.write_text(manifest.read_text().replace("align = false", "align = true"))
    full = {o.step: o.kind for o in _build(manifest, tmp_path / "atlas", dry_run=True).outcomes}
    tasks = [_status(_build(manifest, tmp_path / "atlas", dry_run=True, shard=(i, 4))) for i in range(4)]
    for steps in tasks:  # every task fetches, registers and embeds its share of every species
        assert {step for step, kind in full.items() if kind in ("fetch", "proteins", "index")} <= set(steps)
        assert "groups" not in steps  # left to the final unsharded build
    owned = [step for steps in tasks for step in steps if full[step] in ("database", "align", "map")]
    assert sorted(owned) == sorted(step for step, kind in full.items() if kind in ("database", "align", "map"))
    for pair in ("human__mouse", "human__xenopus", "mouse__xenopus"):  # a pair's alignment and mapping together
        assert [f"map:{pair}" in steps for steps in tasks] == [f"align:{pair}" in steps for steps in tasks]


def _alignments(atlas: Path) -> dict[str, pa.Table]:
    """The alignment tables of an atlas, sorted so row order cannot hide a difference."""
    return {
        path.name: read_table(path, ALIGNMENT).sort_by([("gene_id_a", "ascending"), ("gene_id_b", "ascending")])
        for path in sorted((atlas / "alignments").glob("*.parquet"))
    }


def test_array_tasks_then_a_finish_run_build_the_same_atlas_as_one_machine_table_by_table(
    tmp_path: Path, tiny_weights: Path, sources: Path
) -> None:
    manifest = _manifest(tmp_path, tiny_weights, sources)
    # one pair (and the groups of all three species): an alignment costs seconds of MMseqs2 even for
    # 20 proteins; how the tasks share out several pairs is the test above's
    aligned = 'align = true\nalign_threads = 1\npairs = [["human", "mouse"]]'
    manifest.write_text(manifest.read_text().replace("align = false", aligned))
    reference = tmp_path / "one-machine"
    _build(manifest, reference, jobs=3)

    sharded = tmp_path / "sharded"
    tasks = [_build(manifest, sharded, shard=(i, 3)) for i in range(3)]
    ran = sorted(o.step for task in tasks for o in task.outcomes if o.status == "ran")
    pairs = ("human__mouse",)
    # the tasks built every search database and every alignment, each once
    assert [step for step in ran if step.startswith(("database:", "align:"))] == sorted(
        [*(f"align:{pair}" for pair in pairs), *(f"database:{name}" for name in SPECIES)]
    )
    finish = _status(_build(manifest, sharded))
    assert {finish[f"align:{pair}"] for pair in pairs} == {"up to date"}  # the finish run only did what was left
    assert {finish[f"database:{name}"] for name in SPECIES} == {"up to date"}
    assert finish["groups"] == "ran"

    expected, got = _tables(reference), _tables(sharded)
    assert sorted(got) == sorted(expected) and len(got) == 3 + 1  # genes, the pair's mapping (one pair groups nothing)
    for name, table in expected.items():
        assert got[name].equals(table), name
    assert _alignments(sharded).keys() == _alignments(reference).keys() and len(_alignments(reference)) == 1
    for name, table in _alignments(reference).items():
        assert _alignments(sharded)[name].equals(table), name


def test_url_source_is_fetched_once_with_its_provenance_and_refreshed_on_request(
    tmp_path: Path,
    tiny_weights: Path,
    sources: Path,
    server: Server,  # noqa: F811 (the fixture imported from test_fetch)
) -> None:
    body = gzip.compress((sources / "mouse.fa").read_bytes(), mtime=0)
    server.routes["/mouse.fa.gz"] = [Reply("ok", body)]
    manifest = tmp_path / "atlas.toml"
    manifest.write_text(
        f'[atlas]\nweights = "{tiny_weights}"\n[[species]]\nname = "mouse"\nsource = "{server.url}/mouse.fa.gz"\n'
    )
    atlas = tmp_path / "atlas"
    assert _status(_build(manifest, atlas))["fetch:mouse"] == "ran"
    record = json.loads(Atlas(atlas).source_record("mouse").read_text())
    assert record["url"] == f"{server.url}/mouse.fa.gz" and record["n_records"] == RECORDS and record["fetched_at"]

    assert _build(manifest, atlas).nothing_to_do and len(server.requests) == 1  # no second download
    refreshed = _status(_build(manifest, atlas, refresh_sources=True))
    assert refreshed["fetch:mouse"] == "ran" and refreshed["index:mouse"] == "up to date"  # same content
    assert len(server.requests) == 2

    # issue 19 item 3: a cache file changed on disk is never indexed under the original's provenance
    cached = Path(record["path"])
    cached.write_bytes(gzip.compress(b">sp|P1|P1_MOUSE OX=10090 GN=Other\nMKV\n", mtime=0))
    tampered = _status(_build(manifest, atlas))
    assert tampered["fetch:mouse"] == "ran" and len(server.requests) == 3  # downloaded again
    assert tampered["index:mouse"] == "up to date"  # the same proteome as before: nothing else to redo
    assert (
        hashlib.sha256(cached.read_bytes()).hexdigest()
        == record["sha256"]
        == json.loads(Atlas(atlas).source_record("mouse").read_text())["sha256"]
    )


# --- issue 19: stamps that travel with the atlas, read-only atlases --------------------------------


@pytest.fixture(scope="module")
def two_species(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, sources: Path) -> tuple[Path, Path]:
    """A built atlas of two species (human, mouse; alignment off) and its manifest."""
    folder = tmp_path_factory.mktemp("two")
    manifest = folder / "atlas.toml"
    species = "".join(f'[[species]]\nname = "{name}"\nsource = "{sources / name}.fa"\n' for name in ("human", "mouse"))
    manifest.write_text(f'[atlas]\nweights = "{tiny_weights}"\nalign = false\n{species}')
    report = _build(manifest, folder / "atlas")
    assert {status for status in _status(report).values()} == {"ran"}
    return manifest, folder / "atlas"


def test_a_copied_atlas_missing_a_table_is_not_up_to_date_and_a_moved_one_is(
    two_species: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, built = two_species
    copy = tmp_path / "copy"
    shutil.copytree(built, copy, symlinks=True)
    (mapping,) = (copy / "mappings").glob("*/human__mouse.parquet")
    mapping.unlink()
    report = _build(manifest, copy)
    assert not report.nothing_to_do
    assert _status(report)["map:human__mouse"] == "ran" and mapping.is_file()
    assert _status(report)["index:human"] == "up to date"  # the copy's own tables are checked, and current

    moved = tmp_path / "moved"
    shutil.move(copy, moved)
    assert _build(manifest, moved).nothing_to_do  # stamps name files within the atlas, wherever it is


@pytest.fixture
def read_only(two_species: tuple[Path, Path], tmp_path: Path) -> Iterator[Path]:
    view = tmp_path / "read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(two_species[1]), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a read-only bind mount (root): {mounted.stderr.decode().strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_atlas_builds_as_a_no_op_and_says_why_it_cannot_do_more(
    two_species: tuple[Path, Path], read_only: Path, tmp_path: Path
) -> None:
    manifest = two_species[0]
    result = CliRunner().invoke(main, ["build", str(manifest), "--atlas", str(read_only)])
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.output

    changed = tmp_path / "changed.toml"
    changed.write_text(manifest.read_text().replace("align = false", "align = false\nk = 5"))
    result = CliRunner().invoke(main, ["build", str(changed), "--atlas", str(read_only)])
    assert result.exit_code == 2 and "read-only" in result.output and "Traceback" not in result.output
    assert "map:human__mouse" in result.output  # what would have run
