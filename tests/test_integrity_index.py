"""What `index`, the store and the readers guarantee when runs fail, are killed, race or share an atlas.

Issue 11, items 3, 4, 5, 10, 11, 12, 16 and 18. Kills are real SIGKILLs at named fault points
(`orthovec.core.faults`) in a subprocess running the real command line; everything else runs the CLI
in-process on a copy of one small indexed atlas (tiny random ESM-2, 150 human demo genes).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from orthovec.cli import main
from orthovec.core.faults import FAULT_ENV
from orthovec.core.locks import FileLock
from orthovec.indexer.pipeline import IndexConfig, index_species
from orthovec.indexing import index_proteome
from orthovec.lookup.serve.server import open_for_serving
from orthovec.lookup.store import open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from tests.genes import gene_table

EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"
HUMAN_DEMO = EXAMPLES / "human_demo.fasta.gz"
FROG_DEMO = EXAMPLES / "xenopus_tropicalis_demo.fasta.gz"
MODEL = "esm2_t2_d64_custom"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _index_args(atlas: Path, weights: Path, fasta: Path = HUMAN_DEMO, species: str = "human") -> list[str]:
    return ["index", str(fasta), "--species", species, "--weights", str(weights), "--atlas", str(atlas)]


def _killed_at(point: str, args: list[str]) -> int:
    env = {**os.environ, FAULT_ENV: point}
    command = [sys.executable, "-m", "orthovec.cli", *args]
    return subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120
    ).returncode


def _species(atlas: Path) -> dict[str, dict[str, object]]:
    result = _cli("species", "--atlas", str(atlas), "--format", "json")
    assert result.exit_code == 0, result.output
    return {str(row["species"]): row for row in json.loads(result.output)}


def _nearest_neighbour(atlas: Path) -> str:
    """AK2's nearest human gene as `query --evidence embedding` answers it (a read of the store)."""
    query = _cli("query", "AK2", "--from", "human", "--to", "human", "--evidence", "embedding", "--format", "json",
                 "--atlas", str(atlas))  # fmt: skip
    assert query.exit_code == 0, query.output
    return str(json.loads(query.stdout)[0]["gene_symbol"])


def _exact_nearest(atlas: Path) -> str:
    """AK2's nearest human gene by an exact cosine search of the genes table (not itself: a gene is
    not its own homolog), what the store must answer."""
    genes = pq.read_table(Atlas(atlas).genes("human", MODEL), columns=["gene_symbol", "embedding"]).to_pydict()
    vectors = np.array(genes["embedding"], dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    at = genes["gene_symbol"].index("AK2")
    cosines = vectors @ vectors[at]
    cosines[at] = -np.inf
    return str(genes["gene_symbol"][int(np.argmax(cosines))])


def _digest(root: Path) -> dict[str, str]:
    """Content of every committed file of the species tables (what must not change on failure)."""
    species = root / "species"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(species.rglob("*"))
        if p.is_file() and ".staging" not in p.parts
    }


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """An atlas with the human demo proteome indexed (150 genes), copied by each test that changes it."""
    atlas = tmp_path_factory.mktemp("template") / "atlas"
    result = _cli(*_index_args(atlas, tiny_weights))
    assert result.exit_code == 0, result.output
    return atlas


@pytest.fixture
def atlas(indexed: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "atlas"
    shutil.copytree(indexed, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


@pytest.fixture(scope="module")
def fewer_genes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The human demo FASTA cut to its first 100 records: a re-index that changes the species."""
    with gzip.open(HUMAN_DEMO, "rt") as handle:
        records = handle.read().split(">")[1:101]
    path = tmp_path_factory.mktemp("fasta") / "human_100.fa"
    path.write_text("".join(">" + record for record in records))
    return path


@pytest.fixture
def serving(atlas: Path) -> Iterator[None]:
    """The atlas's store held open the way `orthovec serve` holds it."""
    store = open_for_serving(Atlas(atlas), None, None)
    yield
    store.close()


# --- item 4 / 18: lock first, stage, commit last --------------------------------------------------


def test_index_beside_a_server_is_refused_before_it_changes_anything(
    atlas: Path, serving: None, tiny_weights: Path, fewer_genes: Path
) -> None:
    before, chunks = _digest(atlas), sorted((atlas / "cache").rglob("chunk-*"))
    result = _cli(*_index_args(atlas, tiny_weights, fasta=fewer_genes))
    assert result.exit_code == 2 and "open in another orthovec process" in result.output
    assert "nothing was changed" in result.output and "Traceback" not in result.output
    assert _digest(atlas) == before and sorted((atlas / "cache").rglob("chunk-*")) == chunks
    assert _species(atlas)["human"]["genes"] == 150


def test_a_kill_before_the_commit_leaves_the_old_species_and_one_during_it_is_shown(
    atlas: Path, tiny_weights: Path, fewer_genes: Path
) -> None:
    before = _digest(atlas)
    args = _index_args(atlas, tiny_weights, fasta=fewer_genes)
    assert _killed_at("after-stage", args) == -signal.SIGKILL
    assert _digest(atlas) == before
    human = _species(atlas)["human"]
    assert (human["state"], human["genes"], human["stored"]) == ("complete", 150, 150)

    assert _killed_at("after-store-load", args) == -signal.SIGKILL
    human = _species(atlas)["human"]
    assert human["state"] == "incomplete" and "stopped while committing" in str(human["note"])

    assert _cli(*args).exit_code == 0
    human = _species(atlas)["human"]
    assert (human["state"], human["genes"], human["stored"]) == ("complete", 100, 100)
    assert not (atlas / "species" / "human" / ".staging").exists()


def test_a_species_whose_vectors_left_the_store_is_shown_as_store_missing(atlas: Path) -> None:
    shutil.rmtree(atlas / "qdrant")
    human = _species(atlas)["human"]
    assert (human["state"], human["stored"]) == ("store missing", 0)
    assert "orthovec index" in str(human["note"])
    Atlas(atlas).genes("human", MODEL).write_bytes(b"damaged")
    human = _species(atlas)["human"]
    assert human["state"] == "incomplete" and "unreadable" in str(human["note"])


def test_a_second_run_of_the_same_species_is_refused_and_queries_go_on_while_one_embeds(
    atlas: Path, tiny_weights: Path
) -> None:
    running = FileLock(Atlas(atlas).species_lock("human"))
    assert running.acquire()
    second = _cli(*_index_args(atlas, tiny_weights))
    running.release()
    assert second.exit_code == 2 and "Another `orthovec index` of human is running" in second.output

    answers: list[dict[str, int]] = []

    def query_while_embedding(proteins: int, residues: int) -> Callable[[int, int], None]:
        def advance(done: int, residues_done: int) -> None:
            if not answers:
                store = open_store(Atlas(atlas), read_only=True, wait_s=0)
                answers.append(store.species_counts(MODEL))
                store.close()

        return advance

    config = IndexConfig(fasta=FROG_DEMO, species="xenopus_tropicalis", atlas=Atlas(atlas), weights=tiny_weights)
    assert index_proteome(config, progress=query_while_embedding).complete
    assert answers == [{"human": 150}]


def test_a_damaged_cache_chunk_is_named_with_the_fix(atlas: Path, tiny_weights: Path) -> None:
    chunk = next((atlas / "cache").rglob("chunk-*.parquet"))
    chunk.write_bytes(b"PAR1 not a chunk any more")
    result = _cli(*_index_args(atlas, tiny_weights))
    assert result.exit_code == 2 and chunk.name in result.output and "delete it and run again" in result.output


# --- item 5: exactly one shard run assembles ------------------------------------------------------


def test_of_the_shard_runs_that_find_every_chunk_exactly_one_assembles(tmp_path: Path, tiny_weights: Path) -> None:
    root = tmp_path / "atlas"
    config = {"fasta": HUMAN_DEMO, "species": "human", "atlas": Atlas(root), "weights": tiny_weights}
    first = index_species(IndexConfig(**config, chunk_residues=3000, shard=(0, 2)))
    assert not first.complete and first.chunks_missing
    shard = [*_index_args(root, tiny_weights), "--chunk-residues", "3000", "--shard"]

    assembler = FileLock(Atlas(root).species_lock("human"))
    assert assembler.acquire()  # another run is assembling human right now
    waiting = _cli(*shard, "1/2")
    assembler.release()
    assert waiting.exit_code == 0 and "assembles the species" in waiting.output
    assert not Atlas(root).genes("human", MODEL).exists()

    assert _cli(*shard, "1/2").exit_code == 0  # every chunk present, lock free: this one assembles
    genes = Atlas(root).genes("human", MODEL)
    stamp = genes.stat().st_mtime_ns
    late = _cli(*shard, "0/2")
    assert late.exit_code == 0 and "already assembled" in late.output
    assert genes.stat().st_mtime_ns == stamp
    assert _species(root)["human"]["state"] == "complete"


def test_concurrent_shard_runs_both_exit_0_and_one_assembles(
    atlas: Path, tiny_weights: Path, fewer_genes: Path
) -> None:
    # Every chunk of the 100-gene input is cached already, so all runs race straight to assembly.
    command = [sys.executable, "-m", "orthovec.cli", *_index_args(atlas, tiny_weights, fasta=fewer_genes), "--shard"]
    runs = [subprocess.Popen([*command, f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum("genes from" in output for output in outputs) == 1, outputs  # the one that assembled
    assert sum("assembles the species" in output for output in outputs) == 1, outputs
    human = _species(atlas)["human"]
    assert (human["state"], human["genes"], human["stored"]) == ("complete", 100, 100)


# --- item 12: the store is created atomically and repaired ----------------------------------------


def test_a_kill_while_the_store_is_created_leaves_no_store_and_the_rerun_builds_it(
    atlas: Path, tiny_weights: Path
) -> None:
    root = atlas
    shutil.rmtree(root / "qdrant")  # the embeddings stay cached, so the run reaches the store at once
    args = _index_args(root, tiny_weights)
    assert _killed_at("store-shard-created", args) == -signal.SIGKILL
    assert not (root / "qdrant" / MODEL).exists()
    assert _cli(*args).exit_code == 0
    assert [p.name for p in (root / "qdrant").iterdir() if p.is_dir()] == [MODEL]
    assert _nearest_neighbour(root) == _exact_nearest(root)


def test_index_repairs_a_store_that_lost_its_payload_indexes(atlas: Path, tiny_weights: Path) -> None:
    import qdrant_edge as qe

    shutil.rmtree(atlas / "qdrant" / MODEL)  # what an interrupted older orthovec left: a shard, no indexes
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=64, distance=qe.Distance.Cosine))
    qe.EdgeShard.create(str(atlas / "qdrant" / MODEL), config).close()
    broken = _cli("query", "AK2", "--from", "human", "--to", "human", "--atlas", str(atlas))
    assert broken.exit_code == 2 and "lacks its 'species' index" in broken.output and "Traceback" not in broken.output

    assert _cli(*_index_args(atlas, tiny_weights)).exit_code == 0
    store = open_store(Atlas(atlas), read_only=True)
    assert store.species_counts(MODEL) == {"human": 150}
    store.close()


# --- item 3: one embedding space per comparison ---------------------------------------------------


def test_vectors_of_another_layer_are_refused_by_index_map_load_and_query(atlas: Path, tiny_weights: Path) -> None:
    frog = [*_index_args(atlas, tiny_weights, fasta=FROG_DEMO, species="xenopus_tropicalis"), "--layer", "1"]
    refused = _cli(*frog)
    assert refused.exit_code == 2 and "mixes embedding spaces" in refused.output
    assert "human" in refused.output and "xenopus_tropicalis" in refused.output and "/L1/" in refused.output
    assert not Atlas(atlas).genes("xenopus_tropicalis", MODEL).exists()

    # Tables indexed without the store (as `orthovec build` may) are checked when combined.
    config = IndexConfig(
        fasta=FROG_DEMO, species="xenopus_tropicalis", atlas=Atlas(atlas), weights=tiny_weights, layer=1
    )
    assert index_species(config).complete
    mapped = _cli("map", "human", "xenopus_tropicalis", "--atlas", str(atlas), "--evidence", "embedding")
    assert mapped.exit_code == 2 and "different embedding spaces" in mapped.output
    assert "layer 2 vs 1" in mapped.output

    loaded = _cli("load", "--atlas", str(atlas), "--qdrant-url", f"local:{atlas.parent / 'server'}")
    assert loaded.exit_code == 2 and "mixes embedding spaces" in loaded.output


def test_a_store_that_already_mixes_spaces_is_refused_by_query_and_serve(tmp_path: Path) -> None:
    root = Atlas(tmp_path / "atlas")
    store = open_store(root)
    vectors = np.eye(4, dtype=np.float32)
    store.upsert_genes(MODEL, gene_table("human", vectors, ["H0", "H1", "H2", "H3"]), space=f"{MODEL}/wA/L2")
    store.upsert_genes(MODEL, gene_table("mouse", vectors, ["M0", "M1", "M2", "M3"]), space=f"{MODEL}/wA/L1")
    store.close()
    query = _cli("query", "H1", "--from", "human", "--to", "mouse", "--atlas", str(root.root))
    assert query.exit_code == 2 and "human" in query.output and "mouse" in query.output
    assert "mixes embedding spaces" in query.output
    with pytest.raises(UserError, match="mixes embedding spaces"):
        open_for_serving(root, None, None)


# --- item 10: one set of Qdrant options ----------------------------------------------------------


def test_every_qdrant_command_takes_the_same_url_and_key_options(atlas: Path, tiny_weights: Path) -> None:
    server = f"local:{atlas.parent / 'server'}"
    env = {"ORTHOVEC_QDRANT_API_KEY": "s3cret"}
    indexed = CliRunner().invoke(main, [*_index_args(atlas, tiny_weights), "--qdrant-url", server], env=env)
    assert indexed.exit_code == 0, indexed.output
    query = _cli("query", "AK2", "--from", "human", "--to", "human", "--atlas", str(atlas), "--qdrant-url", server)
    assert query.exit_code == 0 and "AK2" in query.output
    old_spelling = _cli("load", "--atlas", str(atlas), "--qdrant-url", server, "--api-key", "s3cret", "--format", "tsv")
    assert old_spelling.exit_code == 0 and "human\tesm2_t2_d64_custom\t150\t0" in old_spelling.output
    for command in ("index", "query", "load", "serve"):
        assert "--qdrant-api-key" in _cli(command, "--help").output
    assert "deprecated" in _cli("load", "--help").output


# --- item 11 / 16: reads beside a server, on a read-only atlas; a full disk is a message ----------


def test_queries_and_species_work_while_the_atlas_is_served(atlas: Path, serving: None) -> None:
    assert _nearest_neighbour(atlas) == _exact_nearest(atlas)
    assert _species(atlas)["human"]["state"] == "complete"


@pytest.fixture
def read_only(atlas: Path, tmp_path: Path) -> Iterator[Path]:
    view = tmp_path / "read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(atlas), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a read-only bind mount (root): {mounted.stderr.decode().strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_reads_work_on_a_read_only_atlas_and_writes_say_why_not(read_only: Path, tiny_weights: Path) -> None:
    query = _cli("query", "AK2", "--from", "human", "--to", "human", "--atlas", str(read_only), "--format", "json")
    assert query.exit_code == 0, query.output
    assert _species(read_only)["human"]["state"] == "complete"
    open_for_serving(Atlas(read_only), None, None).close()
    index = _cli(*_index_args(read_only, tiny_weights))
    assert index.exit_code == 2 and "read-only" in index.output and "Traceback" not in index.output


@pytest.fixture
def full_disk(atlas: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the atlas on a small tmpfs, filled to the last byte."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["cp", "-a", "--sparse=always", str(atlas), str(disk / "atlas")], check=True)
        with open(disk / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        yield disk / "atlas"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_on_a_full_disk_reads_work_and_index_says_so_instead_of_sigbus(full_disk: Path, tiny_weights: Path) -> None:
    before = _digest(full_disk)
    # In a subprocess: the failure this guards against is a SIGBUS, which would take pytest down with it.
    query = [sys.executable, "-m", "orthovec.cli", "query", "AK2", "--from", "human", "--to", "human"]
    answer = subprocess.run(
        [*query, "--evidence", "embedding", "--atlas", str(full_disk), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)[0]["gene_symbol"] == _exact_nearest(full_disk)
    assert _species(full_disk)["human"]["state"] == "complete"
    index = _cli(*_index_args(full_disk, tiny_weights))
    assert index.exit_code == 2 and "MB are free" in index.output and "Traceback" not in index.output
    assert _digest(full_disk) == before


def test_index_refuses_up_front_when_the_disk_cannot_hold_the_embeddings(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orthovec.core import files

    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 20_000))
    result = _cli(*_index_args(tmp_path / "atlas", tiny_weights))
    assert result.exit_code == 2 and "needs about" in result.output and "Free space" in result.output
    assert not list((tmp_path / "atlas").rglob("*.parquet"))
