"""`orthovec serve` as a process, and the docker-compose deployment file."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from lookup.store import open_store
from schemas.atlas import Atlas
from schemas.tables import genes_table

ROOT = Path(__file__).resolve().parents[1]
MODEL = "esm2_t6_8M_UR50D"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def atlas(tmp_path: Path) -> Path:
    root = tmp_path / "atlas"
    store = open_store(Atlas(root))
    vectors = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    store.upsert_genes(MODEL, genes_table("human", [f"H{i}" for i in range(10)], vectors))
    store.upsert_genes(MODEL, genes_table("mouse", [f"M{i}" for i in range(10)], vectors))
    store.close()
    return root


def test_serve_answers_on_loopback_and_a_second_server_gets_the_lock_error(atlas: Path) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "orthovec.cli", "serve", "--atlas", str(atlas), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.json()["models"] == [MODEL]
        hits = httpx.get(f"http://127.0.0.1:{port}/homologs", params={"gene": "H3", "from": "human", "to": "mouse"})
        assert hits.json()["hits"][0]["gene_id"] == "M3"
        second = subprocess.run([*command[:-1], str(_free_port())], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "open in another orthovec process" in second.stderr and "Traceback" not in second.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_compose_file_declares_qdrant_the_api_and_a_gpu_indexer() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:v1.")  # pinned, not :latest
    assert "healthcheck" in services["qdrant"] and "qdrant_storage" in compose["volumes"]
    assert services["orthovec"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert "http://qdrant:6333" in services["orthovec"]["command"]
    assert services["indexer"]["profiles"] == ["gpu"]
    devices = services["indexer"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["driver"] == "nvidia" and devices["capabilities"] == ["gpu"]


def test_compose_config_validates_when_docker_compose_is_available() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` client on this machine (the YAML is checked by the test above)")
    result = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True
    )
    assert result.returncode == 0, result.stderr
