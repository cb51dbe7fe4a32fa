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

    kind: str  # or redirect (to the URL in `body`)
    body: bytes = b""
    status: int = 200
    content_type: str = "application/gzip"
    headers: dict[str, str] = field(default_factory=dict)  # sent in place of the computed ones


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
            if reply.kind == "redirect":
                self.send_response(302)
                self.send_header("Location", reply.body.decode())
                self.end_headers()
                return
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            body = reply.body[start:]
            self.send_response(206 if start else 200)
            headers = {
                "Content-Type": "text/html" if reply.kind == "html" else reply.content_type,
                "Content-Length": str(len(body)),
                **reply.headers,
            }
            for name, value in headers.items():
                self.send_header(name, value)
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


# --- issue 19: hostile sources and servers ------------------------------------------------------


def test_a_cached_download_that_no_longer_matches_its_address_is_downloaded_again(
    server: Server, proteome_gz: bytes, tmp_path: Path
) -> None:
    server.routes["/human.fa.gz"] = [Reply("ok", proteome_gz)]
    url = f"{server.url}/human.fa.gz"
    first = download(url, tmp_path, FAST, reuse=True)
    Path(first.path).write_bytes(gzip.compress(b">sp|P1|P1_MOUSE OX=10090 GN=Other\nMKV\n", mtime=0))  # tampered
    again = download(url, tmp_path, FAST, reuse=True)
    assert len(server.requests) == 2  # the cache entry no longer held its address: downloaded afresh
    assert Path(again.path).read_bytes() == proteome_gz
    assert again.sha256 == first.sha256 == hashlib.sha256(proteome_gz).hexdigest() and again.n_records == 30


def test_a_malformed_content_length_is_a_clear_error(server: Server, proteome_gz: bytes, tmp_path: Path) -> None:
    server.routes["/human.fa.gz"] = [Reply("ok", proteome_gz, headers={"Content-Length": "lots"})]
    args = ["fetch-proteome", f"{server.url}/human.fa.gz", "--out", str(tmp_path / "x.fa.gz"), "--atlas", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "Content-Length 'lots'" in result.output and len(server.requests) == 1  # not retried
    assert not (tmp_path / "x.fa.gz").exists()


def test_a_malformed_ensembl_checksums_line_is_a_clear_error(
    server: Server, proteome_gz: bytes, tmp_path: Path
) -> None:
    folder = "/release-112/fasta/xenopus_tropicalis/pep/"
    name = "Xenopus_tropicalis.UCB_Xtro_10.0.pep.all.fa.gz"
    server.routes[folder] = [Reply("ok", f'<a href="{name}">{name}</a>'.encode(), content_type="text/plain")]
    server.routes[folder + name] = [Reply("ok", proteome_gz)]
    server.routes[folder + "CHECKSUMS"] = [Reply("ok", f"12a45 7 {name}\n".encode())]
    config = FetchConfig(ensembl_url=server.url, retries=0, backoff_s=0.01)
    with pytest.raises(Invalid, match=r"CHECKSUMS line 1: expected 'SUM BLOCKS FILE'.*'12a45 7 "):
        fetch_proteome(Source("ensembl", "xenopus_tropicalis@112"), tmp_path / "cache", config)


def test_a_redirect_to_another_scheme_is_refused_at_once(server: Server, tmp_path: Path) -> None:
    server.routes["/human.fa.gz"] = [Reply("redirect", b"ftp://127.0.0.1/human.fa.gz")]
    with pytest.raises(Invalid, match=r"redirected to ftp://127\.0\.0\.1/human\.fa\.gz.*only http\(s\)"):
        download(f"{server.url}/human.fa.gz", tmp_path, FAST)
    assert len(server.requests) == 1  # no retries


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sha256", "zz"], "--sha256 zz: expected 64 hex digits"),
        (["--sha256", "0" * 63], "expected 64 hex digits"),
    ],
)
def test_fetch_options_are_checked_before_any_request(
    server: Server, tmp_path: Path, args: list[str], message: str
) -> None:
    source = f"{server.url}/human.fa.gz"
    result = CliRunner().invoke(main, ["fetch-proteome", source, "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert server.requests == []


def test_credentials_in_a_url_are_refused_at_once(server: Server, tmp_path: Path) -> None:
    source = server.url.replace("http://", "http://user:secret@") + "/human.fa.gz"
    result = CliRunner().invoke(main, ["fetch-proteome", source, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "user name or password" in result.output and "Traceback" not in result.output
    assert "secret" not in result.output  # the password is never echoed
    assert server.requests == []


@pytest.mark.parametrize(
    ("make", "kind"), [("fifo", "a named pipe (FIFO)"), ("dir", "a directory"), ("null", "a character device")]
)
def test_a_source_that_is_not_a_regular_file_is_named_as_what_it_is(tmp_path: Path, make: str, kind: str) -> None:
    import os

    source = tmp_path / "source"
    if make == "fifo":
        os.mkfifo(source)
    elif make == "dir":
        source.mkdir()
    else:
        source = Path("/dev/null")
    result = CliRunner().invoke(main, ["fetch-proteome", str(source), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and f"is {kind}" in result.output and "not found" not in result.output
    assert "Traceback" not in result.output


def test_a_fasta_of_headers_only_fails_the_fetch_checks(server: Server, tmp_path: Path) -> None:
    server.routes["/headers.fa"] = [
        Reply("ok", b">sp|P1|P1_HUMAN one\n>sp|P2|P2_HUMAN two\n", content_type="text/plain")
    ]
    with pytest.raises(Invalid, match="2 FASTA headers but no sequence"):
        download(f"{server.url}/headers.fa", tmp_path, FAST)
