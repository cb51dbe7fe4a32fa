"""Reads that copy nothing: beside a server, on a read-only atlas and on a full disk, a reader
answers from the gene tables as the store would, with no temporary copy and no file changed;
and a running server records where it answers, for readers beside it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from orthovec.lookup.query import homologs_of_gene
from orthovec.lookup.store import EdgeStore, GeneStore, GeneTableStore, open_store, serving, serving_url
from orthovec.lookup.store.serving import service_url
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, Unavailable
from tests.genes import gene_table
from tests.store_atlas import MODEL, loaded_atlas

SIZES = {"human": 200, "mouse": 150}


@pytest.fixture
def atlas(tmp_path: Path) -> Atlas:
    return loaded_atlas(tmp_path / "atlas", SIZES)


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory made the process's temporary directory, to see whether anything lands there."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def _answers(store: GeneStore) -> list[list[tuple[str, str, float]]]:
    """What a user sees of a gene query: each hit's species, gene and (rounded) score."""
    hits = homologs_of_gene(store, "huSym13", "human", ["mouse"], 5, MODEL)
    hits += homologs_of_gene(store, "moSym21", "mouse", ["human"], 5, MODEL)
    return [[(h.species, h.gene_id, round(h.score, 5)) for h in hits]]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _expected(atlas: Atlas) -> list[list[tuple[str, str, float]]]:
    store = open_store(atlas, read_only=True)
    try:
        assert isinstance(store, EdgeStore)
        return _answers(store)
    finally:
        store.close()


def test_beside_a_server_a_reader_answers_from_the_gene_tables_and_copies_nothing(atlas: Atlas, temp_dir: Path) -> None:
    server = open_store(atlas, read_only=True)  # owns the shard, as `serve` does
    assert isinstance(server, EdgeStore)
    expected = _answers(server)
    before = _files(atlas.root)
    reader = open_store(atlas, read_only=True)
    assert isinstance(reader, GeneTableStore) and "holds" in reader.why
    assert _answers(reader) == expected
    reader.close()
    assert _files(atlas.root) == before
    server.close()
    assert list(temp_dir.iterdir()) == []


def test_a_reader_that_can_own_the_shard_reads_the_store_itself(atlas: Atlas) -> None:
    reader = open_store(atlas, read_only=True)
    assert isinstance(reader, EdgeStore)
    reader.close()


def test_nothing_is_written_through_the_gene_tables(atlas: Atlas) -> None:
    server = open_store(atlas, read_only=True)
    reader = open_store(atlas, read_only=True)
    try:
        with pytest.raises(Unavailable, match=f"gene tables of {atlas.root}.*nothing can be written"):
            reader.upsert_genes(MODEL, gene_table("human", np.eye(3, 24, dtype=np.float32), ["A", "B", "C"]))
        with pytest.raises(Unavailable, match="nothing can be written"):
            reader.remove_missing(MODEL, "human", [])
    finally:
        reader.close()
        server.close()


@pytest.fixture
def read_only_view(atlas: Atlas, tmp_path: Path) -> Iterator[Atlas]:
    view = tmp_path / "read-only"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(atlas.root), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a read-only bind mount (root): {mounted.stderr.decode().strip()}")
    try:
        yield Atlas(view)
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_on_a_read_only_atlas_a_reader_answers_from_the_gene_tables(
    atlas: Atlas, read_only_view: Atlas, temp_dir: Path
) -> None:
    reader = open_store(read_only_view, read_only=True)
    assert isinstance(reader, GeneTableStore) and "read-only" in reader.why
    answers = _answers(reader)
    reader.close()
    assert answers == _expected(atlas)
    assert list(temp_dir.iterdir()) == []


@pytest.fixture
def full_disk(atlas: Atlas, tmp_path: Path) -> Iterator[Atlas]:
    """A copy of the atlas on a small tmpfs, filled to the last byte."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["cp", "-a", "--sparse=always", str(atlas.root), str(disk / "atlas")], check=True)
        with open(disk / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        yield Atlas(disk / "atlas")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_on_a_full_disk_a_reader_answers_from_the_gene_tables(atlas: Atlas, full_disk: Atlas, temp_dir: Path) -> None:
    before = _files(full_disk.root)
    # In a subprocess: what this guards against is Edge's SIGBUS, which would take pytest down with it.
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[2]);"
        "from pathlib import Path; from orthovec.lookup.store import open_store;"
        "from orthovec.schemas.atlas import Atlas;"
        "from tests.test_store_reads import _answers;"
        "store = open_store(Atlas(Path(sys.argv[1])), read_only=True);"
        "print(json.dumps([type(store).__name__, store.why, _answers(store)]))"
    )
    root = str(Path(__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, "-c", script, str(full_disk.root), root], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    kind, why, answers = json.loads(run.stdout)
    assert (kind, "free" in why) == ("GeneTableStore", True)
    assert [[tuple(hit) for hit in row] for row in answers] == _expected(atlas)
    assert _files(full_disk.root) == before
    assert list(temp_dir.iterdir()) == []


def test_a_gene_table_without_its_vectors_is_named_when_they_are_needed(atlas: Atlas) -> None:
    """The vectors are read apart from the genes, and only for a search: a table that lost its
    embedding column still finds its genes, and a search through it names the file and column."""
    path = atlas.genes("mouse", MODEL)
    pq.write_table(pq.read_table(path).drop_columns(["embedding"]), path)
    reader = GeneTableStore(atlas)
    try:
        assert [g.gene_id for g in reader.find_genes(MODEL, "mouse", "MOSYM21")] == ["MO00021"]
        vector = reader.gene_vectors(MODEL, "human", ["HU00013"])
        with pytest.raises(Invalid, match=f"{path}: missing column 'embedding'"):
            reader.search(MODEL, vector, "mouse", 3)
        assert [g.gene_id for g in reader.search(MODEL, vector, "human", 1)[0]] == ["HU00013"]
    finally:
        reader.close()


# --- the serving record ---------------------------------------------------------------------------


def test_a_server_is_recorded_while_it_runs_and_cleared_after(tmp_path: Path) -> None:
    atlas = Atlas(tmp_path / "atlas")
    assert serving_url(atlas) is None
    with serving(atlas, "0.0.0.0", 8123) as record:
        assert record is not None and record.pid == os.getpid()
        assert serving_url(atlas) == "http://127.0.0.1:8123"
    assert serving_url(atlas) is None
    assert not atlas.serving_record().exists()


@pytest.mark.parametrize(
    ("host", "url"),
    [("::", "http://[::1]:80"), ("fe80::1", "http://[fe80::1]:80"), ("gpu-7.cluster", "http://gpu-7.cluster:80")],
)
def test_the_recorded_url_is_one_a_client_here_can_use(host: str, url: str) -> None:
    assert service_url(host, 80) == url


def test_a_killed_servers_record_is_ignored(tmp_path: Path) -> None:
    atlas = Atlas(tmp_path / "atlas")
    script = (
        "import sys, time; from pathlib import Path; from orthovec.lookup.store import serving\n"
        "from orthovec.schemas.atlas import Atlas\n"
        "with serving(Atlas(Path(sys.argv[1])), '127.0.0.1', 8765):\n    print('ready', flush=True); time.sleep(120)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script, str(atlas.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        assert serving_url(atlas) == "http://127.0.0.1:8765"
    finally:
        server.kill()
        server.wait()
    assert atlas.serving_record().exists()  # SIGKILL left it behind
    assert serving_url(atlas) is None


def test_a_later_servers_record_outlives_an_earlier_ones_exit(tmp_path: Path) -> None:
    atlas = Atlas(tmp_path / "atlas")
    with contextlib.ExitStack() as second:
        with serving(atlas, "127.0.0.1", 8001):
            second.enter_context(serving(atlas, "127.0.0.1", 8002))
        assert serving_url(atlas) == "http://127.0.0.1:8002"
    assert serving_url(atlas) is None


def test_on_a_read_only_atlas_serving_goes_on_unrecorded(read_only_view: Atlas) -> None:
    with serving(read_only_view, "127.0.0.1", 8003) as record:
        assert record is None
    assert serving_url(read_only_view) is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_health(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=30) as health:
                return health.status == 200
        except urllib.error.URLError:
            time.sleep(0.2)
    return False


def test_orthovec_serve_records_its_url_and_readers_beside_it_copy_nothing(atlas: Atlas, temp_dir: Path) -> None:
    expected, port = _expected(atlas), _free_port()
    command = [sys.executable, "-m", "orthovec.cli", "serve", "--atlas", str(atlas.root), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # generous: starting the app imports FastAPI on a loaded machine
        while serving_url(atlas) is None and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert serving_url(atlas) == f"http://127.0.0.1:{port}", server.stderr.read() if server.poll() else ""
        # The record is written just before uvicorn binds its socket (readers pass over a server that
        # does not answer yet), so wait for the socket too.
        assert _answers_health(f"http://127.0.0.1:{port}", deadline), server.stderr.read() if server.poll() else ""
        reader = open_store(atlas, read_only=True)
        assert isinstance(reader, GeneTableStore)
        assert _answers(reader) == expected
        reader.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert serving_url(atlas) is None and not atlas.serving_record().exists()
    assert list(temp_dir.iterdir()) == []
