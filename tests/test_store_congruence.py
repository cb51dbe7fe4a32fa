"""The gene-table reader answers exactly as the embedded store does (qdrant-client's congruence
tests: the same questions to two engines holding the same genes, and the same answers back).

The reader used beside a server, on a read-only atlas or a full disk reads the gene tables
instead of the Edge shard; these tests put every question of `GeneStore` to both.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from orthovec.lookup.query import homologs_of_gene
from orthovec.lookup.store import EdgeStore, GeneStore, GeneTableStore, StoredGene, open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound
from tests.store_atlas import MODEL, loaded_atlas

SIZES = {"human": 300, "mouse": 250, "xenopus_tropicalis": 120}


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Atlas:
    return loaded_atlas(tmp_path_factory.mktemp("congruence") / "atlas", SIZES)


@pytest.fixture(scope="module")
def engines(atlas: Atlas) -> Iterator[tuple[GeneStore, GeneStore]]:
    """The Edge shard as a server holds it, and the reader that finds the shard held."""
    edge = open_store(atlas, read_only=True)
    tables = open_store(atlas, read_only=True)
    assert isinstance(edge, EdgeStore) and isinstance(tables, GeneTableStore)
    yield edge, tables
    tables.close()
    edge.close()


#: Genes 4, 5 and 7 of each species share one vector (`store_atlas`). Which of such tied genes
#: comes first, and which fill the last places where `k` cuts through the tie, is each engine's
#: own business (Qdrant's follows its internal point order); every other place holds the same gene.
TIED = {f"{species[:2].upper()}{i:05d}" for species in SIZES for i in (4, 5, 7)}


def _ids(rows: list[list[StoredGene]]) -> list[list[str]]:
    return [[g.gene_id if g.gene_id not in TIED else f"tied {g.species}" for g in row] for row in rows]


def _same_hits(expected: list[list[StoredGene]], found: list[list[StoredGene]]) -> None:
    assert _ids(found) == _ids(expected)
    assert [[g.species for g in row] for row in found] == [[g.species for g in row] for row in expected]
    for want, got in zip(expected, found, strict=True):
        np.testing.assert_allclose([g.score for g in got], [g.score for g in want], atol=1e-5)
        assert [(g.gene_symbol, g.taxid, g.n_proteins, g.model) for g in got if g.gene_id not in TIED] == [
            (g.gene_symbol, g.taxid, g.n_proteins, g.model) for g in want if g.gene_id not in TIED
        ]


def _queries(edge: GeneStore) -> np.ndarray:
    """Genes of each species (their own vectors), the planted tie, and directions no gene has."""
    known = [
        edge.gene_vectors(MODEL, "human", ["HU00004", "HU00010", "HU00299"]),
        edge.gene_vectors(MODEL, "mouse", ["MO00000", "MO00123"]),
        edge.gene_vectors(MODEL, "xenopus_tropicalis", ["XE00042"]),
    ]
    unseen = np.random.default_rng(7).normal(size=(4, 24)).astype(np.float32) * 3.0
    return np.vstack([*known, unseen])


@pytest.mark.parametrize("k", [1, 3, 10, 400])
@pytest.mark.parametrize("species", ["human", "mouse", "xenopus_tropicalis", None])
def test_searches_return_the_same_genes_in_the_same_order(
    engines: tuple[GeneStore, GeneStore], species: str | None, k: int
) -> None:
    edge, tables = engines
    queries = _queries(edge)
    expected = edge.search(MODEL, queries, species, k)
    assert all(len(row) == min(k, SIZES[species] if species else sum(SIZES.values())) for row in expected)
    _same_hits(expected, tables.search(MODEL, queries, species, k))


def test_genes_with_one_vector_are_all_found_and_rank_level(engines: tuple[GeneStore, GeneStore]) -> None:
    edge, tables = engines
    tie = edge.gene_vectors(MODEL, "human", ["HU00005"])
    for store in engines:
        hits = store.search(MODEL, tie, "human", 4)[0]
        assert {g.gene_id for g in hits[:3]} == {"HU00004", "HU00005", "HU00007"}
        assert [g.score for g in hits[:3]] == pytest.approx([1.0] * 3, abs=1e-6)
        assert hits[3].score < 0.9
        cut = store.search(MODEL, tie, "human", 2)[0]
        assert {g.gene_id for g in cut} < {"HU00004", "HU00005", "HU00007"}
    # The tables order a tie by point id (9357..., 9f25..., e118...), the same on every run.
    assert [g.gene_id for g in tables.search(MODEL, tie, "human", 3)[0]] == ["HU00004", "HU00007", "HU00005"]


def test_a_species_the_store_lacks_gives_no_hits_in_both(engines: tuple[GeneStore, GeneStore]) -> None:
    edge, tables = engines
    queries = _queries(edge)[:2]
    assert edge.search(MODEL, queries, "zebrafish", 5) == tables.search(MODEL, queries, "zebrafish", 5) == [[], []]


@pytest.mark.parametrize(
    ("species", "key"),
    [("human", "husym11"), ("human", "HU00020"), ("mouse", "dup1"), ("mouse", "HUSYM11"), ("human", "nothing")],
)
def test_genes_are_found_by_the_same_keys(engines: tuple[GeneStore, GeneStore], species: str, key: str) -> None:
    edge, tables = engines
    assert tables.find_genes(MODEL, species, key) == edge.find_genes(MODEL, species, key)


def test_listing_counting_and_spaces_agree(engines: tuple[GeneStore, GeneStore]) -> None:
    edge, tables = engines
    assert tables.models() == edge.models() == [MODEL]
    assert tables.species_counts(MODEL) == edge.species_counts(MODEL) == SIZES
    assert tables.spaces(MODEL) == edge.spaces(MODEL)
    assert len(edge.spaces(MODEL)) == 1
    for species in SIZES:
        assert tables.list_genes(MODEL, species) == edge.list_genes(MODEL, species)
    assert tables.list_genes(MODEL, "zebrafish") == edge.list_genes(MODEL, "zebrafish") == []


def test_stored_vectors_agree(engines: tuple[GeneStore, GeneStore]) -> None:
    edge, tables = engines
    ids = ["MO00249", "MO00000", "MO00008"]
    np.testing.assert_allclose(
        tables.gene_vectors(MODEL, "mouse", ids), edge.gene_vectors(MODEL, "mouse", ids), atol=1e-6
    )


def test_a_gene_or_model_the_store_lacks_is_not_found_in_both(engines: tuple[GeneStore, GeneStore]) -> None:
    for store in engines:
        with pytest.raises(NotFound, match="NOPE1"):
            store.gene_vectors(MODEL, "mouse", ["MO00001", "NOPE1"])
    messages = []
    for store in engines:
        with pytest.raises(NotFound, match="orthovec index") as refused:
            store.species_counts("esm2_t33_650M_UR50D")
        messages.append(str(refused.value))
    assert messages[0] == messages[1]


def test_a_gene_query_through_the_service_gives_the_same_homologs(engines: tuple[GeneStore, GeneStore]) -> None:
    by_engine = [
        homologs_of_gene(store, "huSym13", "human", ["mouse", "xenopus_tropicalis"], 5, MODEL) for store in engines
    ]
    rows = [[hit.to_dict() for hit in hits] for hits in by_engine]
    assert len(rows[0]) == 10
    for want, got in zip(*rows, strict=True):
        assert {k: v for k, v in got.items() if not isinstance(v, float)} == {
            k: v for k, v in want.items() if not isinstance(v, float)
        }
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key
