"""Proteome downloads against a local HTTP server: resume, retry, refuse what is not a proteome."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from orthovec.build.fetch import FetchConfig, bsd_sum, download, fetch_proteome
from orthovec.build.manifest import Source
from orthovec.cli import main
from orthovec.schemas.errors import Invalid, NotFound, Unavailable
from tests.conftest import shared_file

FAST = FetchConfig(retries=2, backoff_s=0.01, timeout_s=10)


@dataclass
class Reply:
    """One canned answer: `kind` is ok, truncate (promise all, send half, hang up), status or html."""

    kind: str
    body: bytes = b""
    status: int = 200
    content_type: str = "application/gzip"


@dataclass
class Server:
    url: str
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


@pytest.fixture(scope="module")
def proteome_gz() -> bytes:
    """The first 30 human Swiss-Prot records, gzipped: a small real proteome."""
    records = gzip.decompress(shared_file("proteomes/human_sprot2014.fasta.gz").read_bytes()).split(b"\n>")[:30]
    return gzip.compress(b"\n>".join(records) + b"\n", mtime=0)


@pytest.fixture()
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            state.requests.append((path, self.headers.get("Range")))
            replies = state.routes.get(path)
            if not replies:
                self.send_error(404)
                return
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            if reply.kind == "status":
                self.send_error(reply.status)
                return
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            body = reply.body[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "text/html" if reply.kind == "html" else reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if reply.kind == "truncate" else body)
            if reply.kind == "truncate":
                self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_truncated_transfer_resumes_with_a_range_request(server: Server, proteome_gz: bytes, tmp_path: Path) -> None:
    server.routes["/human.fa.gz"] = [Reply("truncate", proteome_gz), Reply("ok", proteome_gz)]
    fetched = download(f"{server.url}/human.fa.gz", tmp_path, FAST)
    assert fetched.sha256 == hashlib.sha256(proteome_gz).hexdigest()
    assert Path(fetched.path).read_bytes() == proteome_gz
    assert fetched.n_records == 30
    ranges = [header for _, header in server.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(proteome_gz) // 2}-"
    record = json.loads((tmp_path / f"{fetched.sha256}.json").read_text())
    assert record["url"] == f"{server.url}/human.fa.gz" and record["fetched_at"]


def test_server_error_is_retried_then_succeeds(server: Server, proteome_gz: bytes, tmp_path: Path) -> None:
    server.routes["/human.fa.gz"] = [Reply("status", status=500), Reply("ok", proteome_gz)]
    fetched = download(f"{server.url}/human.fa.gz", tmp_path, FAST)
    assert fetched.n_records == 30 and len(server.requests) == 2


def test_server_error_that_persists_is_unavailable(server: Server, tmp_path: Path) -> None:
    server.routes["/human.fa.gz"] = [Reply("status", status=503)]
    with pytest.raises(Unavailable, match=r"after 3 attempts \(HTTP 503"):
        download(f"{server.url}/human.fa.gz", tmp_path, FAST)


def test_missing_file_is_not_found_naming_the_url(server: Server, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"/nothing\.fa\.gz: not found \(HTTP 404\)"):
        download(f"{server.url}/nothing.fa.gz", tmp_path, FAST)
    assert len(server.requests) == 1  # a 404 is an answer, not a hiccup: no retries


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_is_refused_with_its_title(server: Server, tmp_path: Path, content_type: str) -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Maintenance window</title></head><body>Back soon</body></html>\n"
    server.routes["/human.fa.gz"] = [Reply("ok", page, content_type=content_type)]
    with pytest.raises(Invalid, match=r"HTML page \('Maintenance window'\)"):
        download(f"{server.url}/human.fa.gz", tmp_path, FAST)
    assert not list(tmp_path.glob("[0-9a-f]" * 8 + "*"))  # nothing entered the cache


def test_truncated_gzip_is_refused_and_discarded(server: Server, proteome_gz: bytes, tmp_path: Path) -> None:
    server.routes["/human.fa.gz"] = [Reply("ok", proteome_gz[:-200])]
    with pytest.raises(Invalid, match="gzip stream is broken"):
        download(f"{server.url}/human.fa.gz", tmp_path, FAST)
    assert not list((tmp_path / "partial").glob("*.part"))  # a rerun starts afresh, not from bad bytes


def test_uniprot_proteome_by_id_through_the_cli(
    server: Server, proteome_gz: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {"id": "UP000005640", "taxonomy": {"taxonId": 9606, "scientificName": "Homo sapiens"}}
    server.routes["/proteomes/UP000005640"] = [Reply("ok", json.dumps(entry).encode(), content_type="application/json")]
    server.routes["/uniprotkb/stream"] = [Reply("ok", proteome_gz)]
    monkeypatch.setenv("ORTHOVEC_UNIPROT_URL", server.url)
    out = tmp_path / "human.fasta.gz"
    args = ["fetch-proteome", "UP000005640", "--out", str(out), "--atlas", str(tmp_path / "atlas"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert out.read_bytes() == proteome_gz and record["n_records"] == 30
    assert "query=%28proteome%3AUP000005640%29" in record["url"]


def test_unknown_uniprot_proteome_is_a_clear_cli_error(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORTHOVEC_UNIPROT_URL", server.url)
    args = ["fetch-proteome", "UP000000001", "--out", str(tmp_path / "x.fa"), "--atlas", str(tmp_path / "atlas")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "UniProt has no proteome UP000000001" in result.output and "Traceback" not in result.output


def test_ensembl_release_checks_the_published_checksum(server: Server, proteome_gz: bytes, tmp_path: Path) -> None:
    folder = "/release-112/fasta/xenopus_tropicalis/pep/"
    name = "Xenopus_tropicalis.UCB_Xtro_10.0.pep.all.fa.gz"
    (tmp_path / name).write_bytes(proteome_gz)
    listed = subprocess.run(["sum", str(tmp_path / name)], capture_output=True, text=True, check=True).stdout.split()
    assert bsd_sum(tmp_path / name) == f"{int(listed[0])} {int(listed[1])}"  # our `sum` is coreutils' `sum`
    server.routes[folder] = [Reply("ok", f'<a href="{name}">{name}</a>'.encode(), content_type="text/plain")]
    server.routes[folder + name] = [Reply("ok", proteome_gz)]
    server.routes[folder + "CHECKSUMS"] = [Reply("ok", f"{listed[0]} {listed[1]} {name}\n".encode())]
    config = FetchConfig(ensembl_url=server.url, retries=0, backoff_s=0.01)
    source = Source("ensembl", "xenopus_tropicalis@112")
    fetched = fetch_proteome(source, tmp_path / "cache", config)
    assert fetched.checksum is not None and fetched.checksum.algorithm == "bsd-sum" and fetched.n_records == 30

    server.routes[folder + "CHECKSUMS"] = [Reply("ok", f"1 {listed[1]} {name}\n".encode())]
    with pytest.raises(Invalid, match="checksum mismatch"):
        fetch_proteome(source, tmp_path / "cache", config)
    with pytest.raises(NotFound, match="release 112 has no peptide folder for 'xenopus_laevis'"):
        fetch_proteome(Source("ensembl", "xenopus_laevis@112"), tmp_path / "cache", config)
