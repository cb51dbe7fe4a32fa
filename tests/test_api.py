"""The HTTP API through its real stack: endpoints, error codes, limits, OpenAPI fuzzing, concurrency."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from lookup.api import create_app
from lookup.mapping import MappingParams, build_mapping
from lookup.store import GeneStore, open_store
from schemas.atlas import Atlas
from schemas.tables import GENES, MAPPING, genes_table, write_table

MODEL = "esm2_t6_8M_UR50D"
RNG = np.random.default_rng(11)
HUMAN = RNG.normal(size=(40, 16)).astype(np.float32)
MOUSE = (HUMAN + RNG.normal(scale=0.05, size=HUMAN.shape)).astype(np.float32)


def _populate(store: GeneStore, atlas: Atlas) -> None:
    human = genes_table("human", [f"H{i}" for i in range(40)], HUMAN, gene_symbols=[f"GENE{i}" for i in range(40)])
    mouse = genes_table("mouse", [f"M{i}" for i in range(40)], MOUSE, gene_symbols=[f"Gene{i}" for i in range(40)])
    for table in (human, mouse):
        store.upsert_genes(MODEL, table)
        write_table(table, atlas.genes(table.column("species")[0].as_py(), MODEL), GENES, {"model": MODEL})
    write_table(
        build_mapping(human, mouse, MappingParams(), MODEL), atlas.mapping(MODEL, "human", "mouse"), MAPPING, {}
    )


def _fake_embedder(sequences: list[str], model: str) -> np.ndarray:
    """Sequence "GENE<i>" embeds to human gene i's vector (dependency injection; the real
    embedder is tested in test_lookup_cli.py)."""
    return np.stack([HUMAN[int(s.removeprefix("GENE"))] if s.startswith("GENE") else np.ones(16) for s in sequences])


@pytest.fixture(params=["edge", "memory"])
def app_store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    atlas = Atlas(tmp_path / "atlas")
    store = open_store(atlas, None if request.param == "edge" else ":memory:")
    _populate(store, atlas)
    yield create_app(store, atlas, sequence_embedder=_fake_embedder), store
    store.close()


@pytest.fixture
def client(app_store) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app_store[0])


def test_health_and_species(client: TestClient) -> None:
    assert client.get("/health").json()["models"] == [MODEL]
    assert {(s["species"], s["genes"]) for s in client.get("/species").json()} == {("human", 40), ("mouse", 40)}


def test_homologs_of_a_gene(client: TestClient) -> None:
    body = client.get("/homologs", params={"gene": "gene3", "from": "human", "to": "mouse", "k": 3}).json()
    assert body["query"] == {"species": "human", "gene_id": "H3", "gene_symbol": "GENE3"}
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3]
    assert body["hits"][0]["gene_id"] == "M3" and body["hits"][0]["is_rbh"]


def test_homologs_of_sequences(client: TestClient) -> None:
    body = client.post(
        "/homologs/sequence", json={"sequences": [{"id": "q", "sequence": "GENE5"}], "to": ["mouse"], "k": 2}
    )
    assert body.status_code == 200
    assert body.json()["results"][0]["hits"][0]["gene_id"] == "M5"


def test_mapping_pages_filter_by_relation_and_score(client: TestClient) -> None:
    page = client.get("/mappings/human/mouse", params={"relation": "one2one", "limit": 5, "offset": 2}).json()
    assert page["total"] >= 35 and len(page["rows"]) == 5 and page["offset"] == 2
    assert all(r["relation"] == "one2one" for r in page["rows"])
    high = client.get("/mappings/human/mouse", params={"min_score": 0.99}).json()
    assert all(r["score"] >= 0.99 for r in high["rows"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "text"),
    [
        ("get", "/homologs", {"params": {"gene": "NOPE", "from": "human"}}, 404, "No gene 'NOPE'"),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "humna"}}, 404, "Did you mean human"),
        ("get", "/homologs", {"params": {"gene": "GENE1", "from": "human", "k": 1000}}, 422, ""),
        ("get", "/homologs", {"params": {"from": "human"}}, 422, ""),
        ("get", "/mappings/human/frog", {}, 404, "orthovec map human frog"),
        ("get", "/mappings/human/mouse", {"params": {"relation": "bogus"}}, 422, ""),
        ("get", "/mappings/human/mouse", {"params": {"limit": 5000}}, 422, ""),
        ("post", "/homologs/sequence", {"json": {"sequences": [], "to": ["mouse"]}}, 422, ""),
        (
            "post",
            "/homologs/sequence",
            {"json": {"sequences": [{"id": "x", "sequence": "A" * 5001}], "to": ["mouse"]}},
            422,
            "",
        ),
        (
            "post",
            "/homologs/sequence",
            {"json": {"sequences": [{"id": "x", "sequence": "MK"}] * 33, "to": ["mouse"]}},
            422,
            "",
        ),
        (
            "post",
            "/homologs/sequence",
            {"json": {"sequences": [{"id": "x", "sequence": "MK"}], "to": ["yeast"]}},
            404,
            "yeast",
        ),
    ],
)
def test_user_mistakes_get_4xx_with_a_helpful_body(
    client: TestClient, method: str, path: str, kwargs: dict, status: int, text: str
) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert text in response.text


def test_sequences_without_weights_are_a_503_that_says_how_to_fix_it(tmp_path: Path) -> None:
    atlas = Atlas(tmp_path / "atlas")
    store = open_store(atlas)
    _populate(store, atlas)
    response = TestClient(create_app(store, atlas)).post(
        "/homologs/sequence", json={"sequences": [{"id": "q", "sequence": "MKV"}], "to": ["mouse"]}
    )
    store.close()
    assert response.status_code == 503 and "--weights" in response.json()["detail"]


def test_an_api_key_protects_everything_but_health(app_store) -> None:  # type: ignore[no-untyped-def]
    _, store = app_store
    client = TestClient(create_app(store, None, api_key="s3cret"))
    assert client.get("/health").status_code == 200
    assert client.get("/species").status_code == 401
    assert client.get("/species", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/species", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_cors_is_off_unless_an_origin_is_allowed(app_store) -> None:  # type: ignore[no-untyped-def]
    _, store = app_store
    headers = {"Origin": "https://example.org"}
    closed = TestClient(create_app(store, None)).get("/health", headers=headers)
    opened = TestClient(create_app(store, None, cors_origins=["https://example.org"])).get("/health", headers=headers)
    assert "access-control-allow-origin" not in closed.headers
    assert opened.headers["access-control-allow-origin"] == "https://example.org"


def _fuzz_app(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    atlas = Atlas(tmp_path_factory.mktemp("fuzz") / "atlas")
    store = open_store(atlas, ":memory:")
    _populate(store, atlas)
    return create_app(store, atlas, sequence_embedder=_fake_embedder)


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", _fuzz_app(tmp_path_factory))


def test_generated_requests_never_get_a_server_error(fuzz_schema) -> None:  # type: ignore[no-untyped-def]
    """Property-based: requests generated from the OpenAPI document, no 5xx but the documented 503."""
    checked = 0
    for operation in fuzz_schema.get_all_operations():
        op = operation.ok()
        strategy = op.as_strategy()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call()
            assert response.status_code < 500 or response.status_code == 503, (case.path, response.text)

        from hypothesis import given

        given(strategy)(run)()
        checked += 1
    assert checked == 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_eight_parallel_clients_get_the_same_answers_as_serial_queries(app_store) -> None:  # type: ignore[no-untyped-def]
    app, _ = app_store
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        genes = [f"GENE{i % 40}" for i in range(320)]
        with httpx.Client(base_url=base, timeout=30) as serial_client:
            serial = {
                g: serial_client.get("/homologs", params={"gene": g, "from": "human", "k": 5}).json()
                for g in set(genes)
            }

        def ask(gene: str) -> tuple[str, int, dict]:
            with httpx.Client(base_url=base, timeout=30) as c:
                r = c.get("/homologs", params={"gene": gene, "from": "human", "k": 5})
                return gene, r.status_code, r.json()

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(ask, genes))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert all(status == 200 for _, status, _ in results)
    assert all(body == serial[gene] for gene, _, body in results)
