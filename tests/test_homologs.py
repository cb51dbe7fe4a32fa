"""The homolog service: one answer through the CLI, HTTP and Python; every source of evidence; atlases
indexed without embeddings; paralogs; sequences searched with MMseqs2 and no weights.

Real parts throughout: the demo atlas (tiny random ESM-2, MMseqs2 alignments, a fused map), and an
atlas of the same proteomes indexed with `--no-embed`, aligned and mapped on alignments alone.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import orthovec as ov
from orthovec.cli import main
from orthovec.lookup import homologs as service
from orthovec.lookup.homology.mapping import ALIGNMENT_MODEL, MappingParams
from orthovec.lookup.serve.app import create_app
from orthovec.lookup.settings import EVIDENCE
from orthovec.lookup.store import open_store
from orthovec.schemas import api
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import NotFound
from tests.conftest import EXAMPLES, example_records
from tests.diverged import mutated

FROG = "xenopus_tropicalis"
#: A made-up protein with no homolog anywhere: the "no partner" case.
ORPHAN = "MWQHYCPWEWKRNWHTCYPQMFWDCEHWRYPNMQWCHTWYRDPEWMKCWHQYNTPWFCWEMRHYQ"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def plain_atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo proteomes (human with one orphan protein more) indexed without embeddings, aligned,
    mapped on alignments: what a user without a GPU or weights has."""
    root = tmp_path_factory.mktemp("plain") / "atlas"
    human = root.parent / "human.fa"
    records = example_records("human_demo.fasta.gz")
    etf1 = next(sequence for header, sequence in records if "GN=ETF1 " in header)
    records += [
        ("sp|Q00000|Q00000_HUMAN made up OX=9606 GN=ORPHAN1", ORPHAN),
        ("sp|Q00001|Q00001_HUMAN a made-up paralog OX=9606 GN=ETF1P", mutated(etf1, 0.3)),
    ]
    human.write_text("".join(f">{header}\n{sequence}\n" for header, sequence in records))
    _cli("index", str(human), "--species", "human", "--no-embed", "--atlas", str(root))
    _cli(
        "index",
        str(EXAMPLES / "xenopus_tropicalis_demo.fasta.gz"),
        "--species",
        FROG,
        "--no-embed",
        "--atlas",
        str(root),
    )
    _cli("align", "human", FROG, "--threads", "1", "--atlas", str(root))
    _cli("map", "human", FROG, "--evidence", "alignment", "--atlas", str(root))
    return root


# --- one answer for every front end ------------------------------------------------------------------


def test_the_cli_http_and_python_give_the_same_rows(demo_atlas: Path) -> None:
    atlas = Atlas(demo_atlas)
    for gene in ("ETF1", "AK2", "EEF1B2"):
        python = ov.query(gene, "human", k=5, atlas=demo_atlas)
        cli = json.loads(
            _cli("query", gene, "--from", "human", "-k", "5", "--format", "json", "--atlas", str(atlas.root))
        )
        store = open_store(atlas, read_only=True)
        try:
            http = TestClient(create_app(store, atlas)).get("/homologs", params={"gene": gene, "from": "human", "k": 5})
        finally:
            store.close()
        assert http.status_code == 200, http.text
        rows = [hit.model_dump() for hit in python.hits]
        assert http.json()["hits"] == rows
        assert [{key: row[key] for key in api.Homolog.model_fields} for row in cli] == rows
        assert http.json()["targets"] == [t.model_dump() for t in python.targets]
        assert rows[0]["is_one2one"] and rows[0]["evidence"] == "both"  # the aligned one-to-one partner first


# --- evidence orders ---------------------------------------------------------------------------------


def test_each_evidence_order_ranks_by_its_own_score(demo_atlas: Path) -> None:
    answers = {e: ov.query("ETF1", "human", to=[FROG], k=6, evidence=e, atlas=demo_atlas) for e in EVIDENCE}
    assert answers["auto"] == answers["fused"]  # the demo atlas is aligned, embedded and mapped
    fused, aligned, embedded = (answers[e].hits for e in ("fused", "alignment", "embedding"))
    assert [t.evidence for e in EVIDENCE[1:] for t in answers[e].targets] == ["embedding", "alignment", "fused"]
    assert all(h.score == h.bsr for h in aligned if h.bsr is not None)
    assert [h.score for h in embedded] == [h.embedding_score for h in embedded]
    assert [h.score for h in embedded] == sorted((h.score for h in embedded), reverse=True)
    assert [h.embedding_rank for h in embedded] == [1, 2, 3, 4, 5, 6]  # the store's exact neighbours
    assert fused[0].score == pytest.approx(1 + fused[0].bsr) and fused[0].is_one2one and fused[0].is_rbh
    assert all(h.margin == pytest.approx(h.score - n.score, abs=1e-5) for h, n in itertools.pairwise(fused))


def test_the_one_to_one_call_comes_first_when_its_evidence_ties(demo_atlas: Path) -> None:
    answer = ov.query("AK2", "human", to=[FROG], k=10, evidence="alignment", atlas=demo_atlas)
    called = [h for h in answer.hits if h.is_one2one]
    assert called and all(h.rank <= min(o.rank for o in answer.hits if o.score == h.score) for h in called)


# --- atlases indexed without embeddings --------------------------------------------------------------


def test_an_atlas_without_embeddings_is_answered_from_its_tables(plain_atlas: Path) -> None:
    answer = ov.query("ETF1", "human", k=3, atlas=plain_atlas)
    (target,) = answer.targets
    assert answer.model is None and target.evidence == "alignment" and target.mapping == f"human__{FROG}.parquet"
    best = answer.hits[0]
    assert best.gene_symbol == "etf1" and best.is_one2one and best.is_rbh and best.evidence == "alignment"
    assert best.embedding_score is None and best.score == best.bsr and best.relation == "one2one"
    back = ov.query("etf1", FROG, atlas=plain_atlas).hits[0]  # the table read from its other side
    assert back.gene_symbol == "ETF1" and back.is_one2one and back.coverage_query == best.coverage_target


def test_alignments_alone_answer_before_any_map_with_rbh_from_both_directions(
    plain_atlas: Path, tmp_path: Path
) -> None:
    atlas = tmp_path / "atlas"
    shutil.copytree(plain_atlas, atlas)
    shutil.rmtree(atlas / "mappings")
    answer = ov.query("EEF1B2", "human", atlas=atlas)
    assert answer.targets[0].mapping is None and answer.targets[0].evidence == "alignment"
    assert answer.hits[0].gene_symbol == "eef1b2" and answer.hits[0].is_rbh and not answer.hits[0].is_one2one
    with pytest.raises(NotFound, match="no fused evidence") as raised:
        ov.query("EEF1B2", "human", evidence="fused", atlas=atlas)
    assert raised.value.param == "evidence"


def test_a_gene_without_a_partner_says_so(plain_atlas: Path) -> None:
    answer = ov.query("ORPHAN1", "human", atlas=plain_atlas)
    assert answer.hits == [] and answer.targets[0].note == f"no homolog with E-value ≤ 0.01 in {FROG}"
    printed = _cli("query", "ORPHAN1", "--from", "human", "--atlas", str(plain_atlas))
    assert f"no homolog with E-value ≤ 0.01 in {FROG}" in printed


def test_paralogs_come_from_the_genes_own_species_never_the_gene_itself(demo_atlas: Path, plain_atlas: Path) -> None:
    neighbours = ov.query("ETF1", "human", to=["human"], k=5, evidence="embedding", atlas=demo_atlas)
    assert neighbours.hits and all(h.is_paralog and not h.is_rbh for h in neighbours.hits)
    assert "ETF1" not in {h.gene_symbol for h in neighbours.hits} and neighbours.hits[0].embedding_rank == 1
    aligned = ov.query("ETF1", "human", to=["human"], k=5, atlas=plain_atlas)  # MMseqs2: its own proteome
    assert aligned.targets[0].evidence == "alignment" and aligned.hits[0].gene_symbol == "ETF1P"
    assert aligned.hits[0].is_paralog and 0.6 < aligned.hits[0].identity < 0.8
    printed = _cli("query", "ETF1", "--from", "human", "--to", "human", "--atlas", str(plain_atlas))
    assert "paralogs of human ETF1 in human" in printed


# --- sequences, with no weights ----------------------------------------------------------------------


def test_a_mutated_protein_finds_its_ortholog_with_mmseqs2_and_no_weights(plain_atlas: Path) -> None:
    _header, sequence = next(r for r in example_records("human_demo.fasta.gz") if "GN=ETF1 " in r[0])
    query = mutated(sequence, 0.10)
    (answer,) = service.query_sequences(Atlas(plain_atlas), [("etf1-10%", query)], to=[FROG, "human"], k=3)
    assert answer.model is None and [t.evidence for t in answer.targets] == ["alignment", "alignment"]
    frog, human = ([h for h in answer.hits if h.species == s] for s in (FROG, "human"))
    assert frog[0].gene_symbol == "etf1" and human[0].gene_symbol == "ETF1"
    assert 0.85 < human[0].identity < 0.95 and human[0].bsr < 1 and not human[0].is_rbh
    assert human[1].gene_symbol == "ETF1P"  # the made-up paralog, further from the query
    printed = json.loads(
        _cli("query", "--sequence", query, "--to", FROG, "--format", "json", "--atlas", str(plain_atlas))
    )
    assert printed[0]["gene_symbol"] == "etf1" and printed[0]["query"] == "sequence"


def test_sequences_over_http_without_weights_are_searched(plain_atlas: Path) -> None:
    _header, sequence = next(r for r in example_records("human_demo.fasta.gz") if "GN=AK2 " in r[0])
    atlas = Atlas(plain_atlas)
    client = TestClient(create_app(None, atlas, sequence_search=service.mmseqs_search(atlas)))
    body = {"sequences": [{"id": "ak2", "sequence": mutated(sequence, 0.10)}], "to": [FROG]}
    response = client.post("/homologs/sequence", json=body)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["id"] == "ak2" and result["hits"][0]["gene_symbol"] == "ak2"
    too_big = client.post("/homologs/sequence", json={**body, "sequences": [{"id": "x", "sequence": "M" * 5000}] * 11})
    assert too_big.status_code == 422 and "too large" in too_big.text
    assert client.get("/atlas").json()["sequence_queries"] is True


# --- errors ------------------------------------------------------------------------------------------


def test_a_missing_atlas_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=f"The atlas {tmp_path / 'nowhere'} \\(no such directory\\) holds no species"):
        ov.query("TP53", "human", atlas=tmp_path / "nowhere")


def test_unknown_names_are_not_found_with_close_matches(plain_atlas: Path) -> None:
    with pytest.raises(NotFound, match=r"No gene .ETF2. in human\. Close matches: ETF1"):
        ov.query("ETF2", "human", atlas=plain_atlas)
    with pytest.raises(NotFound, match=r"Unknown species .humna.*Did you mean human"):
        ov.query("ETF1", "humna", atlas=plain_atlas)


# --- values repeated from modules a gene query must not import ----------------------------------------


def test_the_service_agrees_with_map_and_the_cli_on_shared_values() -> None:
    assert service.ALIGNMENT_TABLES == ALIGNMENT_MODEL
    assert MappingParams().max_evalue == service.DEFAULT_MAX_EVALUE
    assert get_args(api.Evidence) == EVIDENCE
