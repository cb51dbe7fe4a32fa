"""Proteome downloads: UniProt reference proteomes, Ensembl peptide FASTA, any http(s) URL.

A download streams into a partial file named by its URL; a dropped connection or a 5xx/429 is
retried with exponential backoff, resuming with an HTTP Range request from the bytes already
on disk. Only a file that passed every check (gzip stream complete, FASTA records, HTML error
pages refused, the published checksum when there is one) is moved, by rename, into the
content-addressed cache `ATLAS/cache/downloads/<sha256>`, beside a JSON record of where and when
it came from. A partial file is never where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from orthovec.build.manifest import SHA256, Source
from orthovec.core.logs import get_logger
from orthovec.core.version import __version__
from orthovec.schemas.errors import Invalid, NotFound, Unavailable

logger = get_logger("fetch")

UNIPROT_URL_ENV = "ORTHOVEC_UNIPROT_URL"
ENSEMBL_URL_ENV = "ORTHOVEC_ENSEMBL_URL"
#: Status codes worth another try: the server is busy or briefly broken, not refusing.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
BLOCK = 1 << 20
PROGRESS_EVERY_S = 10.0
#: Residue letters (any case), stop `*` and gap `-`: what a protein FASTA sequence line may hold.
SEQUENCE_LINE = re.compile(r"^[A-Za-z*\-.]+$")


@dataclass(frozen=True)
class FetchConfig:
    """Where the public services live (tests point them at 127.0.0.1) and how hard to retry."""

    uniprot_url: str = "https://rest.uniprot.org"
    ensembl_url: str = "https://ftp.ensembl.org/pub"
    retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 60.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FetchConfig:
        return cls(
            uniprot_url=environ.get(UNIPROT_URL_ENV, cls.uniprot_url).rstrip("/"),
            ensembl_url=environ.get(ENSEMBL_URL_ENV, cls.ensembl_url).rstrip("/"),
        )


@dataclass(frozen=True)
class Checksum:
    """A checksum the source publishes: `algorithm` is "sha256" or "bsd-sum" (Ensembl's CHECKSUMS)."""

    algorithm: str
    value: str
    published_at: str


@dataclass(frozen=True)
class Fetched:
    """A verified proteome file and its provenance (the JSON record beside the cached file)."""

    source: str
    path: str
    sha256: str
    bytes: int
    n_records: int
    url: str | None = None
    fetched_at: str | None = None
    checksum: Checksum | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class _Transient(Exception):
    """A failure another attempt may not have (dropped connection, 5xx, truncated body)."""


def fetch_proteome(
    source: Source,
    cache: Path,
    config: FetchConfig = FetchConfig(),
    *,
    expected_sha256: str | None = None,
    reuse: bool = False,
) -> Fetched:
    """The proteome of `source` as a checked local file: a path is checked in place, anything
    remote is downloaded into the cache (or, with `reuse`, taken from an earlier download)."""
    if expected_sha256 is not None and not SHA256.fullmatch(expected_sha256):
        raise Invalid("expected 64 hex digits (a SHA-256 of the file).", param="sha256", value=expected_sha256)
    if source.kind == "path":
        path = Path(source.value)
        digest, n_records = check_proteome(path, url=None)
        _check_pin(digest, expected_sha256, str(path))
        return Fetched(str(source), str(path), digest, path.stat().st_size, n_records)
    url, checksum = resolve_url(source, config)
    return download(
        url, cache, config, source=str(source), checksum=checksum, expected_sha256=expected_sha256, reuse=reuse
    )


def resolve_url(source: Source, config: FetchConfig) -> tuple[str, Checksum | None]:
    """The download URL of a remote source, and the checksum its publisher lists for it."""
    if source.kind == "url":
        return source.value, None
    if source.kind == "uniprot":
        return _uniprot_url(source.value, config), None
    if source.kind == "ensembl":
        return _ensembl_url(source.value, config)
    raise ValueError(f"not a remote source: {source}")


def _uniprot_url(proteome: str, config: FetchConfig) -> str:
    """UniProt's REST stream of a proteome's entries, after checking the proteome exists.

    Asking UniProtKB for `proteome:UP...` of an unknown id returns an empty 200, which would look
    like an empty proteome; the proteomes endpoint answers 404, which is the error the user needs.
    """
    entry_url = f"{config.uniprot_url}/proteomes/{proteome}"
    try:
        entry = json.loads(_get_small(entry_url, config, accept="application/json"))
    except NotFound:
        raise NotFound(
            f"UniProt has no proteome {proteome} ({entry_url} answered 404). Check the id at "
            f"https://www.uniprot.org/proteomes?query={proteome}; reference proteome ids look like UP000005640."
        ) from None
    except json.JSONDecodeError as err:
        raise Invalid(f"{entry_url}: expected UniProt's JSON proteome entry, got something else ({err}).") from None
    taxonomy = entry.get("taxonomy", {}) if isinstance(entry, dict) else {}
    organism = taxonomy.get("scientificName", "unknown organism")
    logger.info(f"UniProt {proteome}: {organism} (taxid {taxonomy.get('taxonId')})")
    query = urllib.parse.urlencode({"format": "fasta", "compressed": "true", "query": f"(proteome:{proteome})"})
    return f"{config.uniprot_url}/uniprotkb/stream?{query}"


def _ensembl_url(species_release: str, config: FetchConfig) -> tuple[str, Checksum | None]:
    """Ensembl's `*.pep.all.fa.gz` for a species and release, found in the folder listing (its
    name carries the assembly, which users should not have to know) with its CHECKSUMS line."""
    species, release = species_release.split("@")
    folder = f"{config.ensembl_url}/release-{release}/fasta/{species}/pep/"
    try:
        listing = _get_small(folder, config).decode("utf-8", "replace")
    except NotFound:
        raise NotFound(
            f"Ensembl release {release} has no peptide folder for '{species}' ({folder} answered 404). "
            "Check the species name (lower case with underscores, e.g. mus_musculus) and the release number."
        ) from None
    names = sorted(set(re.findall(r'href="([^"/]+\.pep\.all\.fa\.gz)"', listing)))
    if not names:
        raise NotFound(f"{folder}: no *.pep.all.fa.gz file listed; is this an Ensembl FASTA folder?")
    name = names[0]
    logger.info(f"Ensembl {species} release {release}: {name}")
    checksum = None
    with contextlib.suppress(NotFound):
        listing = _get_small(folder + "CHECKSUMS", config).decode("utf-8", "replace")
        checksum = _published_checksum(listing, name, folder + "CHECKSUMS")
    return folder + name, checksum


def _published_checksum(listing: str, name: str, where: str) -> Checksum | None:
    """`name`'s line of an Ensembl CHECKSUMS file ("SUM BLOCKS FILE"), or None when it is not listed."""
    for number, line in enumerate(listing.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[-1] != name:
            continue
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise Invalid(
                f"{where} line {number}: expected 'SUM BLOCKS FILE' (two numbers and the file name), got "
                f"{line.strip()[:80]!r}; the checksum list is damaged, so the download cannot be verified. "
                "Try again later or use another mirror."
            )
        return Checksum("bsd-sum", f"{int(parts[0])} {int(parts[1])}", where)
    return None


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects within http(s) only: urllib would follow one to ftp:// (and retry its failures)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise Invalid(
                f"{req.full_url} redirected to {newurl}; only http(s) downloads are followed. Download the file "
                "yourself and give its path as the source."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpRedirectsOnly)


def _request(url: str, headers: dict[str, str], config: FetchConfig) -> http.client.HTTPResponse:
    """Open `url`; 404/410 -> NotFound, transient statuses and network errors -> _Transient."""
    request = urllib.request.Request(url, headers={"User-Agent": f"orthovec/{__version__}", **headers})
    try:
        response: http.client.HTTPResponse = _OPENER.open(request, timeout=config.timeout_s)
        return response
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise NotFound(f"{url}: not found (HTTP {err.code}); check the URL or id.") from None
        if err.code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {err.code} {err.reason}") from None
        if err.code == 416:
            raise
        raise Invalid(f"{url}: the server refused the download (HTTP {err.code} {err.reason}).") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from None


def _retrying(url: str, config: FetchConfig) -> Iterator[int]:
    """Attempt numbers, sleeping with exponential backoff between them; the caller retries on _Transient."""
    for attempt in range(config.retries + 1):
        if attempt:
            delay = config.backoff_s * 2 ** (attempt - 1)
            logger.info(f"retrying {url} in {delay:.1f} s (attempt {attempt + 1} of {config.retries + 1})")
            time.sleep(delay)
        yield attempt


def _get_small(url: str, config: FetchConfig, accept: str | None = None) -> bytes:
    """A small document (listing, checksum file, JSON entry), retried like a download."""
    last = ""
    for _ in _retrying(url, config):
        try:
            with _request(url, {"Accept": accept} if accept else {}, config) as response:
                return response.read()
        except _Transient as err:
            last = str(err)
    raise Unavailable(f"{url}: no answer after {config.retries + 1} attempts ({last}); try again later.")


def download(
    url: str,
    cache: Path,
    config: FetchConfig = FetchConfig(),
    *,
    source: str | None = None,
    checksum: Checksum | None = None,
    expected_sha256: str | None = None,
    reuse: bool = False,
) -> Fetched:
    """Download `url` into the content-addressed cache, resuming and retrying; returns the record.

    `reuse`: return the file an earlier download of the same URL left in the cache instead of
    downloading again (what a build wants; `fetch-proteome` always asks the server).
    """
    url_key = hashlib.sha256(url.encode()).hexdigest()[:32]
    partial_dir, by_url = cache / "partial", cache / "by-url"
    partial_dir.mkdir(parents=True, exist_ok=True)
    by_url.mkdir(parents=True, exist_ok=True)
    partial = partial_dir / f"{url_key}.part"
    # Array jobs of one sharded build fetch the same URLs: one downloads, the others wait and reuse.
    with open(partial.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        earlier = _earlier_download(by_url / f"{url_key}.json", expected_sha256) if reuse else None
        if earlier is not None:
            return earlier
        _transfer(url, partial, config)
        try:
            digest, n_records = check_proteome(partial, url=url)
            if checksum is not None:
                _check_published(partial, checksum, url)
            _check_pin(digest, expected_sha256, url)
        except Invalid as err:
            partial.unlink(missing_ok=True)  # resuming onto bad bytes would only repeat the error
            raise Invalid(f"{err} The download was discarded.") from None
        record = Fetched(
            source=source or url,
            path=str(cache / digest),
            sha256=digest,
            bytes=partial.stat().st_size,
            n_records=n_records,
            url=url,
            fetched_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            checksum=checksum,
        )
        _write_json(cache / f"{digest}.json", record.to_dict())
        os.replace(partial, cache / digest)
        _write_json(by_url / f"{url_key}.json", record.to_dict())
    logger.info(f"{url}: {n_records:,} records, {record.bytes:,} bytes, sha256 {digest[:16]}…")
    return record


def _earlier_download(record_path: Path, expected_sha256: str | None) -> Fetched | None:
    """The cached download of a URL, or None when there is none that still holds its address.

    The cache is content-addressed, so a file is trusted only after its content hashes to its
    name again: a file changed on disk is discarded and downloaded afresh, never indexed under
    the provenance of the original.
    """
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        checksum = Checksum(**record["checksum"]) if record.get("checksum") else None
        fetched = Fetched(**{**record, "checksum": checksum})
    except (ValueError, TypeError, KeyError):
        logger.warning(f"{record_path}: unreadable download record; downloading again")
        return None
    path = Path(fetched.path)
    if not path.is_file() or (expected_sha256 and fetched.sha256 != expected_sha256):
        return None
    actual = _sha256(path)
    if actual != fetched.sha256 or path.name != fetched.sha256:
        logger.warning(
            f"{path}: the cached download no longer matches its address (content sha256 {actual}); "
            "discarding it and downloading again"
        )
        path.unlink(missing_ok=True)
        return None
    return fetched


def _transfer(url: str, partial: Path, config: FetchConfig) -> None:
    """Stream `url` into `partial`, appending from its current size whenever the server allows."""
    last = ""
    for _ in _retrying(url, config):
        have = partial.stat().st_size if partial.exists() else 0
        try:
            response = _request(url, {"Range": f"bytes={have}-"} if have else {}, config)
        except urllib.error.HTTPError:  # 416: what we hold is not a prefix of this file any more
            partial.unlink(missing_ok=True)
            last = "range not satisfiable; starting over"
            continue
        except _Transient as err:
            last = str(err)
            continue
        with response:
            _refuse_html(response, url)
            if have and response.status != 206:
                have = 0  # the server ignored Range: start over rather than append a second copy
            expected = _expected_size(response, have, url)
            try:
                with open(partial, "ab" if have else "wb") as out:
                    _copy_reporting(response, out, have, expected, url)
            except (OSError, http.client.HTTPException) as err:
                last = f"connection dropped ({type(err).__name__})"
                continue
        got = partial.stat().st_size
        if expected is not None and got < expected:
            last = f"transfer truncated at {got:,} of {expected:,} bytes"
            logger.info(f"{url}: {last}")
            continue
        return
    raise Unavailable(
        f"{url}: download failed after {config.retries + 1} attempts ({last}). Run again later: the "
        "bytes received so far are kept and the download resumes from them."
    )


def _expected_size(response: http.client.HTTPResponse, have: int, url: str) -> int | None:
    """Bytes the file will have once this response is read (None when the server does not say)."""
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    if not length.strip().isdigit():
        raise Invalid(
            f"{url}: the server sent a malformed Content-Length {length.strip()[:40]!r}, so a truncated "
            "transfer could not be told from a complete one; nothing was kept. Try again later or use a mirror."
        )
    return have + int(length)


def _copy_reporting(
    response: http.client.HTTPResponse, out: IO[bytes], have: int, expected: int | None, url: str
) -> None:
    """Copy the body, with a line every PROGRESS_EVERY_S seconds: proteomes take minutes on slow links."""
    started = last_line = time.monotonic()
    done = have
    for block in iter(lambda: response.read(BLOCK), b""):
        out.write(block)
        done += len(block)
        now = time.monotonic()
        if now - last_line >= PROGRESS_EVERY_S:
            last_line = now
            total = f" of {expected / 1e6:,.1f}" if expected else ""
            logger.info(f"{url}: {done / 1e6:,.1f}{total} MB ({(done - have) / 1e6 / (now - started):,.1f} MB/s)")


def _refuse_html(response: http.client.HTTPResponse, url: str) -> None:
    if "html" in response.headers.get("Content-Type", "").lower():
        raise Invalid(
            f"{url} served an HTML page{_title(response.read(65536))} instead of FASTA: the URL points at a web "
            "page or an error page. Use the file's direct download link."
        )


def _title(page: bytes) -> str:
    match = re.search(rb"<title>(.*?)</title>", page, re.IGNORECASE | re.DOTALL)
    return f" ('{match.group(1).decode('utf-8', 'replace').strip()[:80]}')" if match else ""


def check_proteome(path: Path, url: str | None) -> tuple[str, int]:
    """SHA-256 of the file and its FASTA record count; a corrupt or non-FASTA file is an Invalid
    error that says what it is (truncated gzip, HTML page, other text)."""
    where = url or str(path)
    digest = _sha256(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    n_records = n_sequence_lines = 0
    try:
        with _open_text(path, compressed) as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    n_records += 1
                    continue
                n_sequence_lines += 1
                if n_records == 0:
                    if line.lstrip().lower().startswith(("<!doctype", "<html", "<?xml")):
                        head = line + handle.read(4096)
                        raise Invalid(f"{where} is an HTML page{_title(head.encode())}, not a FASTA file.")
                    raise Invalid(f"{where}: not a FASTA file (line {number} should start with '>': {line[:60]!r}).")
                elif not SEQUENCE_LINE.match(line):
                    raise Invalid(f"{where}: line {number} is not a protein sequence: {line[:60]!r}.")
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise Invalid(f"{where}: the gzip stream is broken ({err}): the file is truncated or corrupt.") from None
    if n_records == 0:
        raise Invalid(f"{where}: no FASTA records (an empty proteome); check the source.")
    if n_sequence_lines == 0:
        raise Invalid(f"{where}: {n_records:,} FASTA headers but no sequence lines; check the source.")
    return digest, n_records


def _open_text(path: Path, compressed: bool) -> IO[str]:
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def bsd_sum(path: Path) -> str:
    """The BSD `sum` checksum and 1 KiB block count, as Ensembl's CHECKSUMS files list them."""
    checksum, size = 0, 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            size += len(block)
            for byte in block:
                checksum = ((checksum >> 1) | ((checksum & 1) << 15)) + byte & 0xFFFF
    return f"{checksum} {(size + 1023) // 1024}"


def _check_published(path: Path, checksum: Checksum, url: str) -> None:
    actual = bsd_sum(path) if checksum.algorithm == "bsd-sum" else _sha256(path)
    if actual != checksum.value:
        raise Invalid(
            f"{url}: checksum mismatch ({checksum.algorithm} {actual}, but {checksum.published_at} lists "
            f"{checksum.value}): the transfer was corrupted or the file changed; run again to download it afresh."
        )


def _check_pin(digest: str, expected: str | None, where: str) -> None:
    if expected is not None and digest != expected:
        raise Invalid(
            f"{where}: content sha256 {digest} differs from the manifest's sha256 {expected}; the source changed. "
            "Update the manifest's sha256 if the new file is the one you want."
        )


def _write_json(path: Path, payload: Mapping[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def copy_verified(fetched: Fetched, out: Path) -> Path:
    """Copy a fetched proteome to `out` atomically (the cache keeps its own copy)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.copyfile(fetched.path, tmp)
    os.replace(tmp, out)
    return out
