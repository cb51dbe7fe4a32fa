"""Alignment-only species (issue 20 item 0): `index --no-embed` registers proteins without a model,
a later run with weights adds the embeddings beside them, and `orthovec demo` runs with no weights."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import orthovec as ov
from orthovec.cli import main
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid

EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"
HUMAN_DEMO = EXAMPLES / "human_demo.fasta.gz"
MODEL = "esm2_t2_d64_custom"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _species(atlas: Path) -> list[dict[str, object]]:
    result = _cli("species", "--atlas", str(atlas), "--format", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".lock" not in p.name
    }


def test_no_embed_registers_the_proteins_without_a_model_and_weights_add_embeddings_later(
    tmp_path: Path, tiny_weights: Path
) -> None:
    atlas = tmp_path / "atlas"
    registered = _cli("index", str(HUMAN_DEMO), "--species", "human", "--no-embed", "--atlas", str(atlas))
    assert registered.exit_code == 0, registered.output
    assert "registered for alignment only" in registered.output
    assert Atlas(atlas).proteins("human").is_file()
    assert not (atlas / "qdrant").exists() and not (atlas / "cache" / "embeddings").exists()  # no model, no store
    assert _species(atlas) == [
        {
            "species": "human",
            "model": None,
            "genes": 150,
            "proteins": 150,
            "stored": None,
            "state": "complete",
            "note": "alignment only (no embeddings)",
        }
    ]
    proteins = Atlas(atlas).proteins("human")
    before = proteins.stat().st_mtime_ns, hashlib.sha256(proteins.read_bytes()).hexdigest()

    embedded = _cli(
        "index", str(HUMAN_DEMO), "--species", "human", "--weights", str(tiny_weights), "--atlas", str(atlas)
    )
    assert embedded.exit_code == 0, embedded.output
    # the proteins table is the one registered first: what was built on it stays current
    assert (proteins.stat().st_mtime_ns, hashlib.sha256(proteins.read_bytes()).hexdigest()) == before
    (row,) = _species(atlas)
    assert (row["model"], row["genes"], row["stored"], row["state"]) == (MODEL, 150, 150, "complete")

    # registering the same proteins again leaves the embedded species exactly as it is
    files = _files(atlas / "species")
    again = _cli("index", str(HUMAN_DEMO), "--species", "human", "--no-embed", "--atlas", str(atlas))
    assert again.exit_code == 0 and "already registered" in again.output
    assert _files(atlas / "species") == files and _species(atlas)[0]["model"] == MODEL


def test_new_proteins_for_alignment_only_are_refused_while_vectors_of_the_old_ones_exist(
    tmp_path: Path, tiny_weights: Path
) -> None:
    atlas = tmp_path / "atlas"
    ov.index_proteome(HUMAN_DEMO, "human", atlas=atlas, weights=tiny_weights)
    fewer = tmp_path / "human_100.fa"
    fewer.write_text(">" + ">".join(_records(100)))
    files = _files(atlas / "species")
    with pytest.raises(Invalid, match=r"already has esm2_t2_d64_custom gene vectors of other proteins"):
        ov.index_proteome(fewer, "human", atlas=atlas, embed=False)
    assert _files(atlas / "species") == files  # nothing changed


def _records(n: int) -> list[str]:
    import gzip

    with gzip.open(HUMAN_DEMO, "rt") as handle:
        return handle.read().split(">")[1 : n + 1]


def test_the_python_api_registers_for_alignment_only(tmp_path: Path) -> None:
    result = ov.index_proteome(HUMAN_DEMO, "human", atlas=tmp_path / "atlas", embed=False)
    assert result.complete and result.model is None and result.n_genes == 150
    atlas = Atlas(tmp_path / "atlas")
    assert result.paths["proteins"] == str(atlas.proteins("human"))
    # and its search database, built once here and reused by every pair and sequence query (issue 20 item 0)
    database = Path(result.paths["search_database"])
    assert database.parent == atlas.search_database("human").absolute() and (database / "database.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "WEIGHTS"], "--weights"),
        (["--model", "esm2_t6_8M_UR50D"], "--model esm2_t6_8M_UR50D"),
        (["--shard", "0/2"], "--shard 0/2"),
    ],
)
def test_no_embed_with_an_embedding_option_is_a_clear_error(
    tmp_path: Path, tiny_weights: Path, extra: list[str], message: str
) -> None:
    extra = [str(tiny_weights) if part == "WEIGHTS" else part for part in extra]
    result = _cli("index", str(HUMAN_DEMO), "--species", "human", "--no-embed", *extra, "--atlas", str(tmp_path / "a"))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert "alignment-only" in result.output or "embed off" in result.output
    assert not (tmp_path / "a" / "species").exists()


def _next_commands(output: str) -> list[list[str]]:
    lines = [line.removeprefix("Next: ") for line in output.splitlines() if line.startswith("Next: ")]
    assert lines, output
    return [shlex.split(line) for line in lines]


def test_demo_runs_without_weights_then_weights_add_embeddings_and_every_next_line_works(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no cached weights, and no download
    atlas = tmp_path / "demo"
    result = _cli("demo", "--atlas", str(atlas))
    assert result.exit_code == 0, result.output
    assert "Alignment only" in result.output and "--weights PATH" in result.output
    assert "one-to-one pairs agreeing with DIOPT (7/7 tools): 150 of 150" in result.output
    assert "ak2" in result.output  # AK2's frog ortholog, from the mapping table
    steps = [int(match.group(1)) for match in re.finditer(r"^(\d+)\. ", result.output, re.MULTILINE)]
    assert steps == list(range(1, 7))  # six steps, numbered once each, in order
    assert not (tmp_path / "empty-torch-home").exists()
    for command in _next_commands(result.output):
        assert command[0] == "orthovec"
        followed = _cli(*command[1:])
        assert followed.exit_code == 0, (command, followed.output)

    alignment = atlas / "alignments" / "human__xenopus_tropicalis.parquet"
    aligned_at = alignment.stat().st_mtime_ns
    embedded = _cli("demo", "--weights", str(tiny_weights), "--atlas", str(atlas))
    assert embedded.exit_code == 0, embedded.output
    assert "Alignment only" not in embedded.output and "These weights are random" in embedded.output
    assert "(fused evidence)" in embedded.output
    assert alignment.stat().st_mtime_ns == aligned_at  # same proteins: the alignment is reused, not redone
    for command in _next_commands(embedded.output):
        followed = _cli(*command[1:])
        assert followed.exit_code == 0, (command, followed.output)
