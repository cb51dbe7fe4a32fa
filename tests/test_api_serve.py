"""`orthovec serve` as a process (answers, clear startup errors) and the docker-compose deployment."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from orthovec.lookup import sequence as lookup_sequence
from orthovec.lookup.serve.app import create_app
from orthovec.lookup.store import open_store
from orthovec.lookup.store.load import load_atlas
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Unavailable, UserError
from orthovec.schemas.tables import GENES, write_table
from tests.conftest import example_records
from tests.genes import gene_table

ROOT = Path(__file__).resolve().parents[1]
MODEL = "esm2_t6_8M_UR50D"
SERVE = [sys.executable, "-m", "orthovec.cli", "serve"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def atlas(tmp_path: Path) -> Path:
    """Gene tables loaded into the embedded store through the real load path (what `index` does)."""
    root = tmp_path / "atlas"
    vectors = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    for species in ("human", "mouse"):
        genes = gene_table(species, vectors, [f"{species[0].upper()}{i}" for i in range(10)])
        write_table(genes, Atlas(root).genes(species, MODEL), GENES, {"model": MODEL})
    store = open_store(Atlas(root))
    try:
        load_atlas(Atlas(root), store)
    finally:
        store.close()
    return root


def _wait_for_health(server: subprocess.Popen, port: int) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"server did not answer: {server.communicate(timeout=10)}")


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=60)


def test_serve_answers_and_the_cli_still_queries_the_atlas_it_serves(atlas: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ORTHOVEC_TEST_KEY": "k3y"}
    command = [*SERVE, "--atlas", str(atlas), "--port", str(port), "--api-key-env", "ORTHOVEC_TEST_KEY"]
    command += ["--request-timeout", "1"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert _wait_for_health(server, port).json()["models"] == [MODEL]
        url = f"http://127.0.0.1:{port}/homologs"
        params = {"gene": "H3", "from": "human", "to": "mouse"}
        assert httpx.get(url, params=params).status_code == 401
        hits = httpx.get(url, params=params, headers={"X-API-Key": "k3y"}).json()["hits"]
        assert hits[0]["gene_id"] == "M3"

        query = [sys.executable, "-m", "orthovec.cli", "query", "H3", "--from", "human", "--to", "mouse"]
        beside = subprocess.run([*query, "--atlas", str(atlas), "--format", "json"], capture_output=True, text=True)
        # Without the key the server is passed over and the atlas read in place, with the same rows.
        assert beside.returncode == 0 and "Answered by the orthovec server" not in beside.stderr
        assert [row["gene_id"] for row in json.loads(beside.stdout)] == [hit["gene_id"] for hit in hits]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:  # connects, sends nothing
            assert silent.recv(4096).startswith(b"HTTP/1.1 408 ")
        busy = _serve("--atlas", str(atlas), "--port", str(port))
        assert busy.returncode == 2 and f"--port {port}: Cannot listen" in busy.stderr and "another port" in busy.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert server.returncode is not None


def test_a_gene_query_beside_a_server_is_answered_by_it_with_the_same_rows(atlas: Path) -> None:
    """The server owns the embedded store while it runs; `orthovec query` asks it (GET /homologs)."""
    query = [sys.executable, "-m", "orthovec.cli", "query", "H3", "--from", "human", "--to", "mouse"]
    query += ["--atlas", str(atlas), "--format", "json"]
    alone = subprocess.run(query, capture_output=True, text=True)
    port = _free_port()
    server = subprocess.Popen([*SERVE, "--atlas", str(atlas), "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_health(server, port)
        asked = subprocess.run(query, capture_output=True, text=True)
        unknown = subprocess.run([*query[:4], "NOPE", *query[5:]], capture_output=True, text=True)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert alone.returncode == 0 and "Answered by the orthovec server" not in alone.stderr
    assert asked.returncode == 0 and f"Answered by the orthovec server at http://127.0.0.1:{port}" in asked.stderr
    assert json.loads(asked.stdout) == json.loads(alone.stdout)
    assert unknown.returncode == 2 and "No gene 'NOPE' in human" in unknown.stderr  # the server's error, as the CLI's


def test_serve_refuses_an_empty_atlas_an_unset_key_variable_and_weights_with_no_embed(
    tmp_path: Path, atlas: Path
) -> None:
    empty = _serve("--atlas", str(tmp_path / "nothing"), "--port", str(_free_port()))
    assert empty.returncode == 2 and "holds no species" in empty.stderr and "orthovec index" in empty.stderr
    env_name = "ORTHOVEC_TEST_UNSET_KEY"
    assert env_name not in os.environ
    unset = _serve("--atlas", str(atlas), "--api-key-env", env_name)
    assert unset.returncode == 2 and env_name in unset.stderr
    checkpoint = tmp_path / "any.pt"
    checkpoint.write_bytes(b"")
    both = _serve("--atlas", str(atlas), "--no-embed", "--weights", str(checkpoint))
    assert both.returncode == 2 and "--weights or --no-embed, not both" in both.stderr


# --- sequence queries with the real embedder (--weights) ----------------------------------------


def test_sequence_queries_embed_with_the_atlas_weights(demo_atlas: Path, tiny_weights: Path) -> None:
    """What `serve --weights` wires up: a frog protein's own sequence finds that frog gene first."""
    header, sequence = example_records("xenopus_tropicalis_demo.fasta.gz")[0]
    atlas = Atlas(demo_atlas)
    store = open_store(atlas)
    try:
        embedder = lookup_sequence.lazy_embedder(atlas, tiny_weights, "cpu")
        client = TestClient(create_app(store, atlas, sequence_embedder=embedder))
        body = {"sequences": [{"id": "frog", "sequence": sequence}], "to": ["xenopus_tropicalis"], "k": 3}
        response = client.post("/homologs/sequence", json=body)
    finally:
        store.close()
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]["hits"][0]
    assert top["gene_symbol"] == header.split("GN=")[1].split()[0] and top["score"] == pytest.approx(1.0, abs=1e-4)


def test_serve_embeds_sequences_with_the_atlas_weights_as_query_does(demo_atlas: Path) -> None:
    """Without --weights, serve takes the checkpoint the atlas was indexed with, as `query --fasta`
    does, so a sequence gets the same rows from either (they differed: the server searched with
    MMseqs2 alone while the command also embedded)."""
    header, sequence = example_records("xenopus_tropicalis_demo.fasta.gz")[0]
    port = _free_port()
    server = subprocess.Popen(
        [*SERVE, "--atlas", str(demo_atlas), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_for_health(server, port)
        assert httpx.get(f"http://127.0.0.1:{port}/atlas").json()["sequence_embedding"] is True
        body = {"sequences": [{"id": "frog", "sequence": sequence}], "to": ["xenopus_tropicalis"], "k": 3}
        served = httpx.post(f"http://127.0.0.1:{port}/homologs/sequence", json=body, timeout=120)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert served.status_code == 200, served.text
    command = [sys.executable, "-m", "orthovec.cli", "query", "--sequence", sequence, "--to", "xenopus_tropicalis"]
    done = subprocess.run([*command, "-k", "3", "--atlas", str(demo_atlas), "--format", "json"], capture_output=True)
    assert done.returncode == 0, done.stderr
    hits = served.json()["results"][0]["hits"]
    assert hits[0]["evidence"] == "both" and hits[0]["gene_symbol"] == header.split("GN=")[1].split()[0]
    rows = json.loads(done.stdout)
    assert [{k: v for k, v in row.items() if k in hits[0]} for row in rows] == hits


def test_a_query_sequence_gets_the_same_vector_whatever_is_sent_beside_it(demo_atlas: Path) -> None:
    """The command and the server split the same records differently (the server takes requests of
    at most 32), so a vector must not depend on its batch: with padding it moved in the 6th decimal."""
    sequences = [sequence for _, sequence in example_records("human_demo.fasta.gz")[:6]]
    atlas = Atlas(demo_atlas)
    (model,) = atlas.models_for("human")
    embed = lookup_sequence.embedder_for_atlas(atlas, model, None, "cpu")
    together = embed(sequences)
    assert together.shape[0] == 6 and embed([]).shape[0] == 0
    for i in (0, 5):
        assert np.array_equal(embed([sequences[i]])[0], together[i])


def test_weights_other_than_the_atlas_answer_503(demo_atlas: Path, tmp_path: Path) -> None:
    from orthovec.embedding.random_weights import write_random_checkpoint

    other = write_random_checkpoint(tmp_path / "other.pt", "tiny", seed=1)  # same shape, other weights
    atlas = Atlas(demo_atlas)
    store = open_store(atlas)
    try:
        client = TestClient(
            create_app(store, atlas, sequence_embedder=lookup_sequence.lazy_embedder(atlas, other, "cpu"))
        )
        body = {"sequences": [{"id": "q", "sequence": "MKV"}], "to": ["human"]}
        response = client.post("/homologs/sequence", json=body)
    finally:
        store.close()
    assert response.status_code == 503 and "would not be comparable" in response.json()["detail"]


def test_the_embedder_loads_once_under_concurrent_first_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loads: list[str] = []

    def slow_loader(atlas: Atlas, model: str, weights: Path, device: str):  # type: ignore[no-untyped-def]
        loads.append(model)
        time.sleep(0.1)
        return lambda sequences: np.zeros((len(sequences), 4), dtype=np.float32)

    monkeypatch.setattr(lookup_sequence, "embedder_for_atlas", slow_loader)
    embed = lookup_sequence.lazy_embedder(Atlas(tmp_path), tmp_path / "w.pt", "cpu")
    with ThreadPoolExecutor(max_workers=4) as pool:
        shapes = list(pool.map(lambda n: embed(["MKV"] * n, MODEL).shape, [1, 2, 3, 4]))
    assert loads == [MODEL] and shapes == [(1, 4), (2, 4), (3, 4), (4, 4)]

    def broken_loader(atlas: Atlas, model: str, weights: Path, device: str):  # type: ignore[no-untyped-def]
        raise UserError("cannot read w.pt")

    monkeypatch.setattr(lookup_sequence, "embedder_for_atlas", broken_loader)
    with pytest.raises(Unavailable, match="cannot read w"):
        lookup_sequence.lazy_embedder(Atlas(tmp_path), tmp_path / "w.pt", "cpu")(["MKV"], MODEL)


# --- docker-compose.yml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_a_pinned_qdrant_with_a_volume_and_a_healthcheck(compose: dict) -> None:
    qdrant = compose["services"]["qdrant"]
    assert re.fullmatch(r"qdrant/qdrant:v1\.\d+\.\d+", qdrant["image"])  # pinned, never :latest
    assert {"test", "interval", "retries"} <= set(qdrant["healthcheck"])
    volume = qdrant["volumes"][0].split(":")
    assert volume[1] == "/qdrant/storage" and volume[0] in compose["volumes"]


def test_compose_serves_the_api_from_qdrant(compose: dict) -> None:
    api = compose["services"]["orthovec"]
    assert api["build"] == "."
    assert api["depends_on"]["qdrant"]["condition"] == "service_healthy"
    command = " ".join(api["command"])
    assert command.startswith("serve") and "--host 0.0.0.0" in command and "--qdrant-url http://qdrant:6333" in command
    assert "healthcheck" in api and "/health" in " ".join(api["healthcheck"]["test"])
    assert "profiles" not in api  # the API starts with a plain `docker compose up`


def test_compose_has_an_optional_gpu_indexer(compose: dict) -> None:
    indexer = compose["services"]["indexer"]
    assert indexer["profiles"] == ["gpu"]
    assert indexer["command"][0] == "index" and "http://qdrant:6333" in indexer["command"]
    device = indexer["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_the_image_installs_cpu_torch_then_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    torch = dockerfile.index("pip install --no-cache-dir torch==2.13.0 --index-url ${TORCH_INDEX}")
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile
    assert torch < dockerfile.index("pip install --no-cache-dir .")
    assert "atlas" in (ROOT / ".dockerignore").read_text().split()


def test_compose_config_validates_with_docker_compose() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` on this machine; the YAML is checked by the tests above")
    result = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
