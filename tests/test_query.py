"""Homolog queries over a store: ranks, margins, reciprocal best hits and helpful errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orthovec.lookup.query import GeneRef, homologs_of_gene, search_vectors
from orthovec.lookup.store import GeneStore, open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from tests.genes import gene_table

MODEL = "esm2_t6_8M_UR50D"


@pytest.fixture
def store(tmp_path: Path) -> GeneStore:
    """Human genes; mouse orthologs = human vectors + small noise, plus a paralog pair in mouse."""
    rng = np.random.default_rng(3)
    human = rng.normal(size=(30, 24)).astype(np.float32)
    mouse = human + rng.normal(scale=0.05, size=human.shape).astype(np.float32)
    # Mouse gene 30 is a near-copy of mouse gene 0 (a paralog): both are close to human H0, but
    # H0's reciprocal best hit is only the closer one.
    paralog = mouse[0] + rng.normal(scale=0.2, size=24).astype(np.float32)
    mouse = np.vstack([mouse, paralog])
    opened = open_store(Atlas(tmp_path / "atlas"))
    opened.upsert_genes(
        MODEL, gene_table("human", human, [f"H{i}" for i in range(30)], [f"GENE{i}" for i in range(30)])
    )
    mouse_ids = [f"M{i}" for i in range(31)]
    mouse_symbols = [f"Gene{i}" for i in range(30)] + ["Gene0b"]
    opened.upsert_genes(MODEL, gene_table("mouse", mouse, mouse_ids, mouse_symbols))
    opened.upsert_genes(MODEL, gene_table("frog", human[:5] * -1, [f"F{i}" for i in range(5)]))
    yield opened
    opened.close()


def test_the_ortholog_is_the_top_reciprocal_hit_with_a_margin(store: GeneStore) -> None:
    hits = homologs_of_gene(store, "GENE7", from_species="human", to_species=["mouse"], k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].gene_id == "M7" and hits[0].gene_symbol == "Gene7"
    assert hits[0].is_rbh and not any(h.is_rbh for h in hits[1:])
    assert hits[0].margin == pytest.approx(hits[0].score - hits[1].score, abs=1e-5)
    assert hits[0].query_gene_id == "H7"


def test_symbols_match_whatever_the_species_case_convention(store: GeneStore) -> None:
    lower = homologs_of_gene(store, "gene7", from_species="human", to_species=["mouse"], k=1)
    mouse_style = homologs_of_gene(store, "Gene7", from_species="mouse", to_species=["human"], k=1)
    assert lower[0].gene_id == "M7"
    assert mouse_style[0].gene_id == "H7" and mouse_style[0].is_rbh


def test_without_targets_every_other_species_is_searched(store: GeneStore) -> None:
    hits = homologs_of_gene(store, "H1", from_species="human", k=2)
    assert {h.species for h in hits} == {"frog", "mouse"}


def test_a_paralog_is_a_hit_but_not_the_reciprocal_best(store: GeneStore) -> None:
    hits = homologs_of_gene(store, "H0", from_species="human", to_species=["mouse"], k=2)
    assert [h.gene_id for h in hits] == ["M0", "M30"]
    assert [h.is_rbh for h in hits] == [True, False]


def test_unknown_gene_suggests_close_symbols(store: GeneStore) -> None:
    with pytest.raises(UserError, match=r"No gene 'GENE77' in human.*GENE7"):
        homologs_of_gene(store, "GENE77", from_species="human", to_species=["mouse"])


def test_unknown_species_suggests_close_names(store: GeneStore) -> None:
    with pytest.raises(UserError, match=r"Unknown species 'mouce'.*Did you mean mouse"):
        homologs_of_gene(store, "GENE1", from_species="human", to_species=["mouce"])


def test_an_ambiguous_symbol_lists_its_candidates(tmp_path: Path) -> None:
    store = open_store(Atlas(tmp_path / "atlas"))
    vectors = np.eye(3, 8, dtype=np.float32)
    store.upsert_genes(MODEL, gene_table("human", vectors, ["1", "2", "3"], ["ABC", "abc", "XYZ"]))
    store.upsert_genes(MODEL, gene_table("mouse", vectors, ["m1", "m2", "m3"]))
    assert homologs_of_gene(store, "abc", from_species="human", k=1)[0].query_gene_id == "2"  # exact case wins
    with pytest.raises(UserError, match=r"'Abc' is ambiguous in human: ABC \(1\), abc \(2\)"):
        homologs_of_gene(store, "Abc", from_species="human")
    store.close()


def test_raw_vectors_are_searched_without_rbh(store: GeneStore) -> None:
    query = store.gene_vectors(MODEL, "human", ["H4", "H9"])
    hits = search_vectors(store, MODEL, query, ["mouse"], 2, None, [None, None])
    assert [row[0].gene_id for row in hits] == ["M4", "M9"]
    assert not any(h.is_rbh for row in hits for h in row)


def test_in_the_genes_own_species_its_neighbours_are_paralogs_never_itself(store: GeneStore) -> None:
    (gene,) = store.find_genes(MODEL, "mouse", "M0")
    query = GeneRef(gene.species, gene.gene_id, gene.gene_symbol)
    (hits,) = search_vectors(store, MODEL, store.gene_vectors(MODEL, "mouse", ["M0"]), ["mouse"], 3, "mouse", [query])
    assert hits[0].gene_id == "M30" and "M0" not in {h.gene_id for h in hits}  # its near-copy
    assert len(hits) == 3 and not any(h.is_rbh for h in hits)
