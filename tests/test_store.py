"""The three engines behind GeneStore answer the same questions the same way."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from orthovec.core.locks import FileLock
from orthovec.lookup.store import EdgeStore, GeneStore, GeneTableStore, open_store, point_id
from orthovec.lookup.store import edge as edge_backend
from orthovec.lookup.store.load import load_atlas
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound, Unavailable, UserError
from tests.genes import gene_table
from tests.store_atlas import MODEL, write_gene_tables


@pytest.fixture(params=["edge", "local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> GeneStore:
    url = {"edge": None, "local": f"local:{tmp_path / 'qdrant-local'}", "memory": ":memory:"}[request.param]
    opened = open_store(Atlas(tmp_path / "atlas"), url)
    yield opened
    opened.close()


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_reloading_the_same_genes_never_duplicates_points(store: GeneStore) -> None:
    genes = gene_table("human", _vectors(50), [f"G{i}" for i in range(50)])
    store.upsert_genes(MODEL, genes)
    store.upsert_genes(MODEL, genes)
    store.upsert_genes(MODEL, gene_table("mouse", _vectors(30, seed=1), [f"M{i}" for i in range(30)]))
    assert store.species_counts(MODEL) == {"human": 50, "mouse": 30}
    assert store.models() == [MODEL]


def test_search_is_restricted_to_the_target_species_and_ranks_by_cosine(store: GeneStore) -> None:
    human = _vectors(40)
    store.upsert_genes(MODEL, gene_table("human", human, [f"G{i}" for i in range(40)]))
    store.upsert_genes(MODEL, gene_table("mouse", human[:10] * 3.0, [f"M{i}" for i in range(10)]))
    hits = store.search(MODEL, human[:3], "mouse", k=4)
    assert [h[0].gene_id for h in hits] == ["M0", "M1", "M2"]
    assert all(g.species == "mouse" for row in hits for g in row)
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)  # cosine ignores the x3 scale
    assert all(row[i].score >= row[i + 1].score for row in hits for i in range(3))


def test_genes_are_found_by_symbol_or_id_in_any_case(store: GeneStore) -> None:
    store.upsert_genes(MODEL, gene_table("mouse", _vectors(3), ["22059", "22060", "1"], ["Trp53", "Trp53bp1", None]))
    assert [g.gene_id for g in store.find_genes(MODEL, "mouse", "TRP53")] == ["22059"]
    assert [g.gene_symbol for g in store.find_genes(MODEL, "mouse", "22060")] == ["Trp53bp1"]
    assert store.find_genes(MODEL, "human", "TRP53") == []
    assert len(store.list_genes(MODEL, "mouse")) == 3


def test_stored_vectors_come_back_normalised(store: GeneStore) -> None:
    vectors = _vectors(5)
    store.upsert_genes(MODEL, gene_table("human", vectors, [f"G{i}" for i in range(5)]))
    back = store.gene_vectors(MODEL, "human", ["G3", "G1"])
    expected = vectors[[3, 1]] / np.linalg.norm(vectors[[3, 1]], axis=1, keepdims=True)
    np.testing.assert_allclose(back, expected, atol=1e-5)


def test_reindexing_with_fewer_genes_removes_the_stale_ones(store: GeneStore) -> None:
    store.upsert_genes(MODEL, gene_table("human", _vectors(10), [f"G{i}" for i in range(10)]))
    store.upsert_genes(MODEL, gene_table("mouse", _vectors(4), [f"M{i}" for i in range(4)]))
    removed = store.remove_missing(MODEL, "human", [f"G{i}" for i in range(6)])
    assert removed == 4
    assert store.species_counts(MODEL) == {"human": 6, "mouse": 4}


def test_point_ids_are_deterministic_and_distinct_per_model_and_species() -> None:
    assert point_id("m", "human", "TP53") == point_id("m", "human", "TP53")
    assert len({point_id("m", "human", "X"), point_id("m", "mouse", "X"), point_id("n", "human", "X")}) == 3


def test_one_writer_or_many_readers_and_each_refusal_is_clear(tmp_path: Path) -> None:
    atlas = write_gene_tables(tmp_path / "atlas", {"human": 12})
    writer = open_store(atlas)
    load_atlas(atlas, writer)
    with pytest.raises(Unavailable, match="open in another orthovec process"):
        open_store(atlas)
    with pytest.raises(Unavailable, match="is being written"):
        open_store(atlas, read_only=True, wait_s=0)
    writer.close()
    server = open_store(atlas, read_only=True)  # owns the shard, as `serve` does
    assert isinstance(server, EdgeStore) and server.species_counts(MODEL) == {"human": 12}
    reader = open_store(atlas, read_only=True)  # a `query` beside it reads the gene tables
    assert isinstance(reader, GeneTableStore) and reader.species_counts(MODEL) == {"human": 12}
    with pytest.raises(Unavailable, match="open in another orthovec process"):
        open_store(atlas)
    reader.close()
    server.close()
    open_store(atlas).close()


def test_a_writer_or_reader_waits_for_another_writers_commit_but_not_for_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    atlas = Atlas(tmp_path / "atlas")
    committing = FileLock(atlas.store_lock())
    assert committing.acquire()
    threading.Timer(0.5, committing.release).start()
    open_store(atlas, wait_s=10).close()  # got the lock once the other commit ended
    assert committing.acquire()
    threading.Timer(0.5, committing.release).start()
    open_store(atlas, read_only=True).close()
    server = open_store(atlas, read_only=True)
    waits: list[float] = []
    monkeypatch.setattr(edge_backend.time, "sleep", waits.append)
    with pytest.raises(Unavailable, match="open in another orthovec process"):
        open_store(atlas, wait_s=10)
    assert waits == []  # a server does not go away by itself: refused without waiting
    server.close()


def test_a_writer_waits_for_a_passing_holder_of_the_write_ahead_log(tmp_path: Path) -> None:
    """Seen in a parallel build: the writer held the store lock, yet Edge found its log locked
    (`WouldBlock`) by a holder on its way out. The load now waits for it instead of failing."""
    atlas = Atlas(tmp_path / "atlas")
    store = open_store(atlas)
    store.upsert_genes(MODEL, gene_table("human", _vectors(5), [f"G{i}" for i in range(5)]))
    store.close()
    wal = os.open(atlas.qdrant(MODEL) / "wal", os.O_RDONLY)
    fcntl.flock(wal, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a forked child's copy of Edge's lock holds it
    threading.Timer(0.5, os.close, [wal]).start()
    again = open_store(atlas)
    again.upsert_genes(MODEL, gene_table("mouse", _vectors(5, seed=1), [f"M{i}" for i in range(5)]))
    assert again.species_counts(MODEL) == {"human": 5, "mouse": 5}
    again.close()


def test_an_empty_store_says_what_to_do(tmp_path: Path) -> None:
    store = open_store(Atlas(tmp_path / "atlas"))
    with pytest.raises(NotFound, match="orthovec index"):
        store.species_counts(MODEL)


def test_a_full_disk_inside_the_engine_is_one_message(tmp_path: Path) -> None:
    store = EdgeStore(Atlas(tmp_path / "atlas"))
    store.upsert_genes(MODEL, gene_table("human", _vectors(3), ["A", "B", "C"]))

    class FullDisk:  # the real shard, whose writes now fail as Edge reports ENOSPC
        def __init__(self, shard: object) -> None:
            self.shard = shard

        def update(self, operation: object) -> None:
            raise Exception("Service runtime error: failed to write segment: No space left on device (os error 28)")

        def __getattr__(self, name: str) -> object:
            return getattr(self.shard, name)

    store._shards[MODEL] = FullDisk(store._shards[MODEL])
    with pytest.raises(UserError, match="the disk is full"):
        store.upsert_genes(MODEL, gene_table("human", _vectors(3), ["A", "B", "D"]))
    store._shards[MODEL] = store._shards[MODEL].shard
    store.close()
