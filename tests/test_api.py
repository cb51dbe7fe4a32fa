"""The HTTP API through its real stack: endpoints, status codes, limits, OpenAPI fuzzing, concurrency."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from orthovec.lookup.serve.app import create_app
from orthovec.lookup.store import GeneStore, open_store
from orthovec.schemas.api import ApiLimits, Homolog
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, Unavailable
from orthovec.schemas.tables import MAPPING, write_table
from tests.genes import gene_table

MODEL = "esm2_t6_8M_UR50D"
N_GENES = 40
RNG = np.random.default_rng(11)
HUMAN = RNG.normal(size=(N_GENES, 16)).astype(np.float32)
MOUSE = (HUMAN + RNG.normal(scale=0.05, size=HUMAN.shape)).astype(np.float32)
FROG = (HUMAN + RNG.normal(scale=0.3, size=HUMAN.shape)).astype(np.float32)
#: Paralogs with one symbol: querying "PAR" is ambiguous, querying by ID is not.
PARALOGS = RNG.normal(size=(2, 16)).astype(np.float32)


def _populate(store: GeneStore) -> None:
    ids = range(N_GENES)
    store.upsert_genes(MODEL, gene_table("human", HUMAN, [f"H{i}" for i in ids], [f"GENE{i}" for i in ids]))
    store.upsert_genes(MODEL, gene_table("human", PARALOGS, ["HP1", "HP2"], ["PAR", "PAR"]))
    store.upsert_genes(MODEL, gene_table("mouse", MOUSE, [f"M{i}" for i in ids], [f"Gene{i}" for i in ids]))
    store.upsert_genes(MODEL, gene_table("frog", FROG, [f"F{i}" for i in ids], [f"gene{i}.L" for i in ids]))


def _write_mapping(atlas: Atlas) -> pa.Table:
    """A small human → mouse mapping table, as `orthovec map` writes it (one row per relation kind)."""
    relations = ["one2one", "one2many", "many2one", "many2many"]
    n = 30
    table = pa.table(
        {
            "species_a": ["human"] * n,
            "gene_id_a": [f"H{i}" for i in range(n)],
            "gene_symbol_a": [f"GENE{i}" for i in range(n)],
            "species_b": ["mouse"] * n,
            "gene_id_b": [f"M{i}" for i in range(n)],
            "gene_symbol_b": [f"Gene{i}" for i in range(n)],
            "score": pa.array([float("nan")] + [1.0 - i / 100 for i in range(1, n)], pa.float32()),
            "rank_ab": pa.array([1] * n, pa.int32()),
            "rank_ba": pa.array([1] * n, pa.int32()),
            "is_rbh": [i % 3 == 0 for i in range(n)],
            "relation": [relations[i % 4] for i in range(n)],
            "group_id": pa.array(list(range(n)), pa.int64()),
            "source": ["orthovec"] * n,
        }
    )
    write_table(table, atlas.mapping(MODEL, "human", "mouse"), MAPPING, {"model": MODEL})
    return table


AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def _sequence_of(i: int) -> str:
    """A made-up protein sequence standing for human gene i."""
    return "MQ" + AMINO_ACIDS[i // 20] + AMINO_ACIDS[i % 20]


KNOWN_SEQUENCES = {_sequence_of(i): i for i in range(N_GENES)}


def _fake_embedder(sequences: list[str], model: str) -> np.ndarray:
    """Dependency injection: a known sequence embeds to its human gene's vector, others to ones;
    "MBAD" fails like a residue the real embedder rejects (the real one is tested in test_lookup_cli.py)."""
    vectors = []
    for sequence in sequences:
        if sequence == "MBAD":
            raise Invalid("query sequence 1: 'B' is not allowed here (fake embedder).")
        index = KNOWN_SEQUENCES.get(sequence.upper().rstrip("*"))
        vectors.append(np.ones(16) if index is None else HUMAN[index])
    return np.stack(vectors).astype(np.float32)


def _open(tmp_path: Path, engine: str) -> tuple[GeneStore, Atlas]:
    atlas = Atlas(tmp_path / f"atlas-{engine}")
    store = open_store(atlas, None if engine == "edge" else ":memory:")
    _populate(store)
    _write_mapping(atlas)
    return store, atlas


@pytest.fixture(scope="module", params=["edge", "memory"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, GeneStore, Atlas]]:
    """The app over each engine: Qdrant Edge (embedded default) and qdrant-client's local mode.
    Built once per engine (tests only read, or put back what they change)."""
    store, atlas = _open(tmp_path_factory.mktemp("served"), request.param)
    yield create_app(store, atlas, sequence_embedder=_fake_embedder), store, atlas
    store.close()


@pytest.fixture
def client(served: tuple[FastAPI, GeneStore, Atlas]) -> TestClient:
    return TestClient(served[0])


# --- endpoints --------------------------------------------------------------------------------


def test_health_names_the_store_and_its_models(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["models"] == [MODEL] and body["store"]


def test_species_lists_gene_counts_per_model(client: TestClient) -> None:
    rows = client.get("/species").json()["species"]
    assert {(r["species"], r["model"], r["genes"]) for r in rows} == {
        ("frog", MODEL, N_GENES),
        ("human", MODEL, N_GENES + 2),
        ("mouse", MODEL, N_GENES),
    }


def test_homologs_of_a_gene_recover_the_ortholog_as_reciprocal_best_hit(client: TestClient) -> None:
    body = client.get("/homologs", params={"gene": "gene3", "from": "human", "to": "mouse", "k": 3}).json()
    assert body["query"] == {"species": "human", "gene_id": "H3", "gene_symbol": "GENE3"}
    assert body["model"] == MODEL
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3]
    best = body["hits"][0]
    assert best["gene_id"] == "M3" and best["gene_symbol"] == "Gene3" and best["is_rbh"]
    assert best["margin"] == pytest.approx(best["score"] - body["hits"][1]["score"], abs=1e-5)
    assert set(best) == set(Homolog.model_fields)  # the service's row, as the CLI and ov.query show it
    assert best["evidence"] == "embedding" and best["score"] == best["embedding_score"]
    alignment = {"bits", "bsr", "identity", "coverage_query", "coverage_target", "evalue"}
    assert all(best[key] is None for key in alignment)  # null: this atlas has no alignments
    (target,) = body["targets"]
    assert target["species"] == "mouse" and target["evidence"] == "embedding" and target["mapping"]


def test_homologs_go_to_every_other_species_unless_to_repeats(client: TestClient) -> None:
    default = client.get("/homologs", params={"gene": "H7", "from": "human", "k": 2}).json()["hits"]
    assert [(h["species"], h["rank"]) for h in default] == [
        ("frog", 1),
        ("frog", 2),
        ("mouse", 1),
        ("mouse", 2),
    ]
    repeated = client.get("/homologs", params=[("gene", "H7"), ("from", "human"), ("to", "mouse"), ("to", "frog")])
    assert {h["species"] for h in repeated.json()["hits"]} == {"mouse", "frog"}
    assert [h["gene_id"] for h in default if h["rank"] == 1] == ["F7", "M7"]


def test_homologs_of_sequences_answer_per_sequence_in_order(client: TestClient) -> None:
    sequences = [
        {"id": "a", "sequence": _sequence_of(5)},
        {"id": "b", "sequence": _sequence_of(9).lower() + "*"},
    ]
    response = client.post("/homologs/sequence", json={"sequences": sequences, "to": ["mouse", "frog"], "k": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["a", "b"]
    assert [h["gene_id"] for h in results[0]["hits"] if h["rank"] == 1] == ["M5", "F5"]
    assert results[1]["hits"][0]["gene_id"] == "M9"
    assert not any(h["is_rbh"] for r in results for h in r["hits"])  # no source gene, no RBH


def test_mapping_pages_filter_by_relation_and_score_and_add_up(client: TestClient) -> None:
    full = client.get("/mappings/human/mouse", params={"limit": 1000}).json()
    assert full["total"] == 30 and full["next_offset"] is None and full["model"] == MODEL
    assert full["rows"][0]["score"] is None  # NaN in the file is null in JSON
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/mappings/human/mouse", params={"relation": "one2one", "limit": 3, "offset": offset})
        body = page.json()
        assert body["total"] == 8 and len(body["rows"]) <= 3
        pages += body["rows"]
        offset = body["next_offset"]
    assert [r["gene_id_a"] for r in pages] == [f"H{i}" for i in range(0, 30, 4)]
    assert all(r["relation"] == "one2one" and r["source"] == "orthovec" for r in pages)
    high = client.get("/mappings/human/mouse", params={"min_score": 0.95}).json()
    assert high["total"] == 4 and all(r["score"] >= 0.95 for r in high["rows"])  # 0.95 as float32 is less


def test_a_rewritten_mapping_table_is_served_fresh(served: tuple[FastAPI, GeneStore, Atlas]) -> None:
    app, _, atlas = served
    client = TestClient(app)
    assert client.get("/mappings/human/mouse").json()["total"] == 30
    table = _write_mapping(atlas).slice(0, 4)
    write_table(table, atlas.mapping(MODEL, "human", "mouse"), MAPPING, {"model": MODEL})
    assert client.get("/mappings/human/mouse").json()["total"] == 4
    _write_mapping(atlas)
    assert client.get("/mappings/human/mouse").json()["total"] == 30


def test_openapi_document_and_docs_are_published(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert {
        "/health",
        "/species",
        "/homologs",
        "/homologs/sequence",
        "/mappings/{species_a}/{species_b}",
    } <= set(document["paths"])
    k = next(p for p in document["paths"]["/homologs"]["get"]["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == 100
    assert client.get("/docs").status_code == 200


def test_both_engines_give_the_same_answers(tmp_path: Path) -> None:
    answers = []
    for engine in ("edge", "memory"):
        store, atlas = _open(tmp_path, engine)
        client = TestClient(create_app(store, atlas, sequence_embedder=_fake_embedder))
        genes = [client.get("/homologs", params={"gene": f"GENE{i}", "from": "human"}).json() for i in range(10)]
        answers.append((genes, client.get("/species").json(), client.get("/mappings/human/mouse").json()))
        store.close()
    (edge_genes, *edge_rest), (memory_genes, *memory_rest) = answers
    assert edge_rest == memory_rest
    for edge, memory in zip(edge_genes, memory_genes, strict=True):
        assert edge["query"] == memory["query"]
        key = [(h["species"], h["gene_id"], h["rank"], h["is_rbh"]) for h in edge["hits"]]
        assert key == [(h["species"], h["gene_id"], h["rank"], h["is_rbh"]) for h in memory["hits"]]
        assert [h["score"] for h in edge["hits"]] == pytest.approx([h["score"] for h in memory["hits"]], abs=1e-5)


# --- status codes and limits ----------------------------------------------------------------

SEQUENCE = "/homologs/sequence"


def _body(sequences: list[str], to: list[str] | None = None, **extra: object) -> dict[str, object]:
    return {
        "sequences": [{"id": f"q{i}", "sequence": s} for i, s in enumerate(sequences)],
        "to": to or ["mouse"],
    } | (extra)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "text"),
    [
        # not there: 404 with the CLI's message and close matches
        (
            "get",
            "/homologs",
            {"params": {"gene": "GENE99", "from": "human"}},
            404,
            "No gene 'GENE99' in human",
        ),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "humna"}}, 404, "Did you mean human"),
        (
            "get",
            "/homologs",
            {"params": {"gene": "GENE1", "from": "human", "to": "mose"}},
            404,
            "Did you mean mouse",
        ),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "human", "model": "esm9"}}, 404, "esm9"),
        ("get", "/mappings/human/frog", {}, 404, "`orthovec map human frog`"),
        ("get", "/mappings/mouse/human", {}, 404, "The reverse table exists: GET /mappings/human/mouse"),
        ("post", SEQUENCE, {"json": _body(["MKV"], ["yeast"])}, 404, "Unknown species 'yeast'"),
        # names several things: 400
        ("get", "/homologs", {"params": {"gene": "par", "from": "human"}}, 400, "ambiguous"),
        # malformed or over the limits: 422
        ("get", "/homologs", {"params": {"from": "human"}}, 422, "gene"),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "human", "k": 0}}, 422, "k"),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "human", "k": 101}}, 422, "100"),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "../etc"}}, 422, "pattern"),
        (
            "get",
            "/homologs",
            {"params": [("gene", "G"), ("from", "human")] + [("to", "mouse")] * 101},
            422,
            "100",
        ),
        ("get", "/mappings/human/mouse", {"params": {"relation": "orthologous"}}, 422, "relation"),
        ("get", "/mappings/human/mouse", {"params": {"limit": 1001}}, 422, "1000"),
        ("get", "/mappings/human/mouse", {"params": {"offset": -1}}, 422, "offset"),
        ("get", "/mappings/human/mouse", {"params": {"min_score": "high"}}, 422, "min_score"),
        ("post", SEQUENCE, {"json": _body([])}, 422, "sequences"),
        ("post", SEQUENCE, {"json": _body(["A" * 5001])}, 422, "5000"),
        ("post", SEQUENCE, {"json": _body(["MK"] * 33)}, 422, "32"),
        ("post", SEQUENCE, {"json": _body(["MK1V"])}, 422, "pattern"),
        ("post", SEQUENCE, {"json": _body(["MKV"], k=101)}, 422, "100"),
        ("post", SEQUENCE, {"json": _body(["MBAD"])}, 422, "fake embedder"),
        (
            "post",
            SEQUENCE,
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "",
        ),
        # too big to read: 413
        ("post", SEQUENCE, {"json": _body(["M" * 5000] * 300)}, 413, "bytes"),
    ],
)
def test_user_mistakes_get_4xx_with_a_helpful_body(
    client: TestClient, method: str, path: str, kwargs: dict, status: int, text: str
) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert text in response.text


def test_an_ambiguous_symbol_is_fine_by_gene_id(client: TestClient) -> None:
    response = client.get("/homologs", params={"gene": "HP2", "from": "human", "to": "mouse"})
    assert response.status_code == 200 and response.json()["query"]["gene_symbol"] == "PAR"


def test_a_species_held_under_one_model_uses_it_and_several_need_a_model_parameter(tmp_path: Path) -> None:
    """Issue 21 item 6: a second model in the store does not make every query ambiguous."""
    store, atlas = _open(tmp_path, "memory")
    store.upsert_genes("esm2_t12_35M_UR50D", gene_table("frog", FROG[:3], ["F0", "F1", "F2"]))
    client = TestClient(create_app(store, atlas))
    one = client.get("/homologs", params={"gene": "GENE1", "from": "human", "to": "mouse"})
    store.upsert_genes("esm2_t12_35M_UR50D", gene_table("human", HUMAN[:3], ["H0", "H1", "H2"]))
    store.upsert_genes("esm2_t12_35M_UR50D", gene_table("mouse", MOUSE[:3], ["M0", "M1", "M2"]))
    client = TestClient(create_app(store, atlas))
    unchosen = client.get("/homologs", params={"gene": "GENE1", "from": "human", "to": "mouse"})
    chosen = client.get("/homologs", params={"gene": "GENE1", "from": "human", "to": "mouse", "model": MODEL})
    store.close()
    assert one.status_code == 200 and one.json()["model"] == MODEL
    assert unchosen.status_code == 400, unchosen.text
    assert unchosen.json()["detail"].startswith("model: human is held under several models; choose one.")
    assert chosen.status_code == 200 and chosen.json()["hits"][0]["gene_id"] == "M1"


def test_configured_limits_are_enforced_and_published(served: tuple[FastAPI, GeneStore, Atlas]) -> None:
    _, store, atlas = served
    limits = ApiLimits(max_k=5, max_sequences=2, max_sequence_length=10, max_page=7)
    client = TestClient(create_app(store, atlas, sequence_embedder=_fake_embedder, limits=limits))
    assert client.get("/homologs", params={"gene": "GENE1", "from": "human", "k": 5}).status_code == 200
    assert client.get("/homologs", params={"gene": "GENE1", "from": "human", "k": 6}).status_code == 422
    assert client.post(SEQUENCE, json=_body([_sequence_of(1)] * 2)).status_code == 200
    assert client.post(SEQUENCE, json=_body([_sequence_of(1)] * 3)).status_code == 422
    assert client.post(SEQUENCE, json=_body(["M" * 11])).status_code == 422
    assert client.get("/mappings/human/mouse", params={"limit": 8}).status_code == 422
    document = client.get("/openapi.json").json()
    body = document["components"]["schemas"]["SequenceQuery"]["properties"]
    assert body["sequences"]["maxItems"] == 2 and body["k"]["maximum"] == 5


def test_a_server_with_nothing_to_answer_sequences_with_says_so_in_a_503(
    served: tuple[FastAPI, GeneStore, Atlas],
) -> None:
    """No weights, and no proteomes in the atlas to search (this store was loaded without an index)."""
    _, store, atlas = served
    response = TestClient(create_app(store, atlas)).post(SEQUENCE, json=_body(["MKV"]))
    assert response.status_code == 503 and "neither the atlas's proteomes" in response.json()["detail"]


def test_weights_that_fail_to_load_are_a_503(served: tuple[FastAPI, GeneStore, Atlas]) -> None:
    _, store, atlas = served

    def broken(sequences: list[str], model: str) -> np.ndarray:
        raise Unavailable("Cannot embed sequences with w.pt: checksum differs from the atlas.")

    response = TestClient(create_app(store, atlas, sequence_embedder=broken)).post(SEQUENCE, json=_body(["MKV"]))
    assert response.status_code == 503 and "checksum" in response.json()["detail"]


def test_an_api_key_protects_everything_but_health_the_schema_and_the_pages(
    served: tuple[FastAPI, GeneStore, Atlas],
) -> None:
    _, store, atlas = served
    client = TestClient(create_app(store, atlas, sequence_embedder=_fake_embedder, api_key="s3cret"))
    protected = [
        ("get", "/species", {}),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "human"}}),
        ("post", SEQUENCE, {"json": _body([_sequence_of(1)])}),
        ("get", "/mappings/human/mouse", {}),
        ("get", "/atlas", {}),
        ("get", "/genes", {"params": {"species": "human", "q": "GENE"}}),
    ]
    for method, path, kwargs in protected:
        assert getattr(client, method)(path, **kwargs).status_code == 401, path
        wrong = getattr(client, method)(path, headers={"X-API-Key": "s3cre"}, **kwargs)
        assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["detail"]
        assert getattr(client, method)(path, headers={"X-API-Key": "s3cret"}, **kwargs).status_code == 200
    for public in ("/health", "/openapi.json", "/docs", "/redoc", "/", "/web/app.js"):
        assert client.get(public).status_code == 200, public
    assert "APIKeyHeader" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_cors_is_off_unless_an_origin_is_allowed(served: tuple[FastAPI, GeneStore, Atlas]) -> None:
    _, store, atlas = served
    origin = {"Origin": "https://example.org"}
    closed = TestClient(create_app(store, atlas)).get("/health", headers=origin)
    opened = TestClient(create_app(store, atlas, cors_origins=["https://example.org"]))
    assert "access-control-allow-origin" not in closed.headers
    assert opened.get("/health", headers=origin).headers["access-control-allow-origin"] == "https://example.org"
    other = opened.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = opened.options(
        "/homologs",
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert preflight.status_code == 200


def test_health_is_503_when_the_store_does_not_answer(tmp_path: Path) -> None:
    store, atlas = _open(tmp_path, "memory")
    client = TestClient(create_app(store, atlas))
    store.close()
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


# --- property-based: requests generated from the OpenAPI document ---------------------------


@pytest.fixture(scope="module")
def fuzzed_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    store, atlas = _open(tmp_path_factory.mktemp("fuzz"), "edge")
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(store, atlas, sequence_embedder=_fake_embedder))
    store.close()


#: Operations with inputs to generate (/health, /species and /atlas take none: tested above and in
#: test_api_hardening.py).
OPERATIONS = [
    ("GET", "/homologs"),
    ("GET", "/genes"),
    ("POST", "/homologs/sequence"),
    ("GET", "/mappings/{species_a}/{species_b}"),
]


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_get_documented_answers_and_never_a_server_error(
    fuzzed_api: schemathesis.BaseSchema, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    """Valid (positive) and invalid (negative) requests generated from the OpenAPI document: no 5xx,
    and every response is one the document declares, with its schema.

    Hypothesis drives schemathesis's strategies directly: `schemathesis.pytest.from_fixture` does not
    run under pytest 9 (it reads a private attribute pytest removed).
    """
    documented = {(m.upper(), p) for p, ops in fuzzed_api.raw_schema["paths"].items() for m in ops}
    assert documented == {*OPERATIONS, ("GET", "/health"), ("GET", "/species"), ("GET", "/atlas")}
    operation = fuzzed_api[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        response = case.call()
        assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text)
        case.validate_response(response)

    check()


# --- concurrency over loopback ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _same(a: object, b: object) -> bool:
    """Equal JSON, floats within 1e-5: qdrant-client's local mode varies in the 6th decimal between
    identical calls (Edge does not)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_eight_parallel_clients_get_the_same_answers_as_serial_queries(
    served: tuple[FastAPI, GeneStore, Atlas],
) -> None:
    """Edge runs unlocked here (it is safe for concurrent reads); local mode runs behind the app's lock."""
    app = served[0]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start listening (see its log above)"
    base = f"http://127.0.0.1:{port}"
    requests = [("homologs", f"GENE{i % N_GENES}") for i in range(240)] + [("mappings", str(i % 30)) for i in range(60)]

    def ask(client: httpx.Client, kind: str, value: str) -> tuple[int, dict]:
        if kind == "homologs":
            response = client.get("/homologs", params={"gene": value, "from": "human", "k": 5})
        else:
            response = client.get("/mappings/human/mouse", params={"offset": value, "limit": 5})
        return response.status_code, response.json()

    local = threading.local()

    def ask_in_thread(request: tuple[str, str]) -> tuple[int, dict]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=30)
        return ask(local.client, *request)

    try:
        with httpx.Client(base_url=base, timeout=30) as serial_client:
            serial = {request: ask(serial_client, *request) for request in set(requests)}
        with ThreadPoolExecutor(max_workers=8) as pool:
            parallel = list(pool.map(ask_in_thread, requests))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert all(status == 200 for status, _ in parallel)
    assert all(_same(body, serial[request][1]) for (_, body), request in zip(parallel, requests, strict=True))
