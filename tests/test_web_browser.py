"""The lookup page and the API docs in a real browser: headless Chromium driven by Selenium, against a
real `orthovec serve` subprocess on 127.0.0.1 with the demo atlas (tiny random ESM-2 weights).

Chromium comes from Debian (`.ci/browser-deps` installs `chromium` and `chromium-driver`); these
tests skip, saying so, only where it is not installed. Chromium runs behind a proxy that refuses
every connection, and the tests also read its network log: nothing the pages load may come from
anywhere but the server.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import example_records
from tests.diverged import mutated

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
#: Set to refresh the README's screenshot (docs/img/lookup_page.png); otherwise it goes to a temporary folder, so
#: a test run leaves the work tree as it was.
UPDATE_SCREENSHOT = os.environ.get("ORTHOVEC_UPDATE_SCREENSHOT") == "1"
FROG = "xenopus_tropicalis"
#: Flags that work headless as root in a container, with nothing reaching out on its own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
    # Every host but the loopback one goes through a proxy that refuses (nothing listens on port 9).
    "--proxy-server=http://127.0.0.1:9",
]

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"no {CHROMIUM} and {CHROMEDRIVER}: run .ci/browser-deps (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (after the skip: the dev extra may be installed without a browser)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`orthovec serve` in a subprocess, stopped on exit."""

    def __init__(self, atlas: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        command = [sys.executable, "-m", "orthovec.cli", "serve", "--atlas", str(atlas), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *args], stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(self.url + "health", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(
            f"orthovec serve did not start: {self.process.stderr.read() if self.process.stderr else ''}"
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def demo_atlas(demo_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the session's demo atlas, and a second one for a server with an API
    key (the first server holds its own store's lock)."""
    atlas = tmp_path_factory.mktemp("web") / "atlas"
    shutil.copytree(demo_atlas, atlas, symlinks=True)
    shutil.copytree(demo_atlas, atlas.parent / "keyed", symlinks=True)
    return atlas


@pytest.fixture(scope="module")
def server(demo_atlas: Path, tiny_weights: Path) -> Iterator[Server]:
    running = Server(demo_atlas, "--weights", str(tiny_weights))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _wait(driver: WebDriver, condition, timeout: float = 15):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout).until(condition)


def _open(driver: WebDriver, url: str) -> None:
    """Load the page and wait until it has described the atlas (its first API call)."""
    driver.get(url)
    _wait(driver, lambda d: "weights sha256" in d.find_element(By.ID, "provenance").text)


def _rows(driver: WebDriver, where: str = "results") -> list[list[str]]:
    """Each body row's cells as rendered (`innerText`, what `.text` returns), in one round trip:
    one WebDriver call per cell made a 1,000-row table take most of a test's 30 s."""
    script = (
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))"
    )
    return driver.execute_script(script, f"#{where} tbody tr")  # type: ignore[no-any-return]


def _column(driver: WebDriver, name: str, where: str = "results") -> int:
    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, f"#{where} thead th")]
    return headers.index(name)


def _look_up(driver: WebDriver, gene: str, source: str, target: str) -> None:
    Select(driver.find_element(By.ID, "from-species")).select_by_value(source)
    Select(driver.find_element(By.ID, "to-species")).select_by_value(target)
    box = driver.find_element(By.ID, "gene")
    box.clear()
    box.send_keys(gene)
    driver.find_element(By.ID, "search").click()


def _api(server: Server, path: str, **params: object) -> dict:
    response = httpx.get(server.url + path, params=params)  # type: ignore[arg-type]
    return {"status": response.status_code, **response.json()}


def test_a_typed_gene_with_a_chosen_species_shows_the_expected_top_hit(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    _open(browser, server.url)
    box = browser.find_element(By.ID, "gene")
    box.send_keys("eef1b")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#gene-suggestions option"))
    suggested = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#gene-suggestions option")]
    assert suggested == ["EEF1B2"]

    _look_up(browser, "EEF1B2", "human", FROG)
    _wait(browser, lambda d: _rows(d))
    expected = _api(server, "homologs", gene="EEF1B2", **{"from": "human", "to": FROG, "k": 5})["hits"]
    shown = _rows(browser)
    symbol, rbh = _column(browser, "Symbol"), _column(browser, "Reciprocal best hit")
    assert [row[symbol] for row in shown] == [hit["gene_symbol"] for hit in expected]
    assert shown[0][symbol] == "eef1b2" and shown[0][rbh] == "yes"  # the DIOPT ortholog the demo pairs it with
    screenshot = (ROOT / "docs" / "img" if UPDATE_SCREENSHOT else tmp_path) / "lookup_page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def test_a_rows_link_asks_for_that_genes_homologs_in_the_other_direction(server: Server, browser: WebDriver) -> None:
    _open(browser, server.url)
    _look_up(browser, "EEF1B2", "human", FROG)
    _wait(browser, lambda d: _rows(d))
    browser.find_element(By.CSS_SELECTOR, "#results a.reverse").click()
    _wait(browser, lambda d: "Homologs of eef1b2" in d.find_element(By.CSS_SELECTOR, "#results caption").text)
    assert "from=xenopus_tropicalis" in browser.current_url and "to=human" in browser.current_url
    symbol = _column(browser, "Symbol")
    assert _rows(browser)[0][symbol] == "EEF1B2"
    assert Select(browser.find_element(By.ID, "from-species")).first_selected_option.get_attribute("value") == FROG


def test_the_first_hit_is_the_aligned_one_to_one_partner_with_its_evidence(server: Server, browser: WebDriver) -> None:
    """The demo atlas is aligned and mapped: EEF1B2's first hit is the partner `map` calls one-to-one,
    with the alignment's identity, coverages and E-value, as GET /homologs gives them."""
    _open(browser, server.url)
    _look_up(browser, "EEF1B2", "human", FROG)
    _wait(browser, lambda d: _rows(d))
    expected = _api(server, "homologs", gene="EEF1B2", **{"from": "human", "to": FROG, "k": 5})
    best = expected["hits"][0]
    assert best["is_one2one"] and best["evidence"] == "both" and best["evalue"] < 1e-30
    first = _rows(browser)[0]
    shown = {name: first[_column(browser, name)] for name in ("Symbol", "One-to-one", "Evidence", "Identity")}
    assert shown == {"Symbol": "eef1b2", "One-to-one": "yes", "Evidence": "both", "Identity": f"{best['identity']:.4f}"}
    coverages = (first[_column(browser, "Query coverage")], first[_column(browser, "Hit coverage")])
    assert coverages == (f"{best['coverage_query']:.4f}", f"{best['coverage_target']:.4f}")
    assert first[_column(browser, "E-value")] == f"{best['evalue']:.1e}".replace("e-0", "e-")
    targets = browser.find_element(By.CSS_SELECTOR, "#results ul.targets").text
    assert f"{FROG}: fused evidence, mapping table human__{FROG}.parquet" in targets
    aligned = [row for row in _rows(browser)[1:] if row[_column(browser, "Identity")]]
    assert all(row[_column(browser, "One-to-one")] == "no" for row in aligned)


def test_an_unknown_gene_shows_the_clis_message(server: Server, browser: WebDriver) -> None:
    _open(browser, server.url)
    _look_up(browser, "EEF1BX", "human", FROG)
    error = _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    expected = _api(server, "homologs", gene="EEF1BX", **{"from": "human", "to": FROG})
    assert expected["status"] == 404 and error.text == expected["detail"]
    assert error.text.startswith("No gene 'EEF1BX' in human. Close matches: EEF1B2")
    assert error.get_attribute("role") == "alert" and not _rows(browser)


def test_the_tsv_download_holds_the_rows_shown(server: Server, browser: WebDriver, downloads: Path) -> None:
    _open(browser, server.url)
    _look_up(browser, "AK2", "human", FROG)
    _wait(browser, lambda d: _rows(d))
    browser.find_element(By.ID, "download-tsv").click()
    path = downloads / "homologs_AK2_human.tsv"
    _wait(browser, lambda d: path.is_file() and path.stat().st_size > 0)
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    expected = _api(server, "homologs", gene="AK2", **{"from": "human", "to": FROG, "k": 5})["hits"]
    assert [r["gene_id"] for r in rows] == [h["gene_id"] for h in expected]
    assert {r["query_gene_symbol"] for r in rows} == {"AK2"} and rows[0]["rank"] == "1"
    assert float(rows[0]["score"]) == pytest.approx(expected[0]["score"])


def test_the_keyboard_alone_runs_a_query(server: Server, browser: WebDriver) -> None:
    _open(browser, server.url)
    browser.find_element(By.ID, "from-species").send_keys(Keys.TAB)  # focus moves on to the gene box
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "gene"
    focused.send_keys("ETF1", Keys.ENTER)
    _wait(browser, lambda d: _rows(d))
    assert "Homologs of ETF1" in browser.find_element(By.CSS_SELECTOR, "#results caption").text


def _show_mapping(driver: WebDriver, relation: str, min_score: str, page_size: str) -> str:
    """Fill the mapping form, show the table, and return its caption once the rows are there."""
    Select(driver.find_element(By.ID, "relation")).select_by_value(relation)
    for field, value in (("min-score", min_score), ("page-size", page_size)):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.ID, "show-mapping").click()
    return str(_wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#mapping-results caption").text))


def test_mapping_tables_filter_by_score_and_relation_and_page(server: Server, browser: WebDriver) -> None:
    _open(browser, server.url)
    caption = _show_mapping(browser, "", "0.9", "10")
    expected = _api(server, f"mappings/human/{FROG}", min_score=0.9, limit=10)
    assert f"rows 1–10 of {expected['total']:,} matching" in caption and expected["total"] > 20
    score, gene_b = _column(browser, "score", "mapping-results"), _column(browser, "gene_id_b", "mapping-results")
    assert min(float(row[score]) for row in _rows(browser, "mapping-results")) >= 0.9
    browser.find_element(By.XPATH, "//button[text()='Next page']").click()
    _wait(browser, lambda d: "rows 11–20" in d.find_element(By.CSS_SELECTOR, "#mapping-results caption").text)
    second = _api(server, f"mappings/human/{FROG}", min_score=0.9, limit=10, offset=10)
    assert [row[gene_b] for row in _rows(browser, "mapping-results")] == [r["gene_id_b"] for r in second["rows"]]

    one2one = _api(server, f"mappings/human/{FROG}", relation="one2one", limit=1000)
    caption = _show_mapping(browser, "one2one", "", "1000")
    assert f"of {one2one['total']:,} matching" in caption
    relation = _column(browser, "relation", "mapping-results")
    assert [row[relation] for row in _rows(browser, "mapping-results")] == ["one2one"] * one2one["total"]


def test_a_pasted_sequence_finds_its_own_gene_and_the_footer_shows_provenance(
    server: Server, browser: WebDriver
) -> None:
    header, sequence = example_records("xenopus_tropicalis_demo.fasta.gz")[0]
    _open(browser, server.url)
    _paste_sequence(browser, sequence, FROG)
    first = _rows(browser)[0]
    assert first[_column(browser, "Symbol")] == header.split("GN=")[1].split()[0]
    assert first[_column(browser, "Evidence")] == "both" and first[_column(browser, "Identity")] == "1.0000"
    (model,) = _api(server, "atlas")["models"]
    footer = browser.find_element(By.ID, "provenance").text
    assert model["weights_sha256"] in footer and "2 species, 300 genes" in footer and model["model"] in footer


def _requests_since_last_call(driver: WebDriver) -> dict[str, str | None]:
    """URL of every request the browser began since the last call, with the reason it blocked it
    itself (e.g. "csp": refused by the page's Content-Security-Policy, never sent), else None."""
    messages = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    blocked = {
        m["params"]["requestId"]: m["params"].get("blockedReason")
        for m in messages
        if m["method"] == "Network.loadingFailed"
    }
    return {
        m["params"]["request"]["url"]: blocked.get(m["params"]["requestId"])
        for m in messages
        if m["method"] == "Network.requestWillBeSent"
    }


@pytest.mark.parametrize(("path", "rendered"), [("docs", ".swagger-ui .opblock"), ("redoc", "[id^='operation']")])
def test_the_api_docs_render_with_no_request_leaving_the_server(
    server: Server, browser: WebDriver, path: str, rendered: str
) -> None:
    _requests_since_last_call(browser)
    browser.get(server.url + path)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, rendered)) >= 5)
    assert "/homologs" in browser.find_element(By.TAG_NAME, "body").text
    requests = _requests_since_last_call(browser)
    assert any(url.endswith(".js") for url in requests)
    outside = {url: reason for url, reason in requests.items() if urlsplit(url).scheme in ("http", "https")}
    outside = {url: reason for url, reason in outside.items() if not url.startswith(server.url)}
    # ReDoc's bundle always asks for a logo from its CDN: the server's policy makes the browser refuse it.
    assert all(reason == "csp" for reason in outside.values()), outside


def test_with_an_api_key_the_page_asks_for_it_and_sends_it(demo_atlas: Path, browser: WebDriver) -> None:
    keyed = Server(
        demo_atlas.parent / "keyed", "--no-embed", "--api-key-env", "ORTHOVEC_WEB_KEY", env={"ORTHOVEC_WEB_KEY": "k3y"}
    )
    try:
        browser.get(keyed.url)
        key_box = _wait(
            browser, lambda d: d.find_element(By.ID, "api-key").is_displayed() and d.find_element(By.ID, "api-key")
        )
        assert "needs an API key" in browser.find_element(By.ID, "error").text
        key_box.send_keys("wrong", Keys.ENTER)
        _wait(browser, lambda d: "not accepted" in d.find_element(By.ID, "error").text)
        browser.find_element(By.ID, "api-key").send_keys("k3y", Keys.ENTER)
        _wait(browser, lambda d: "weights sha256" in d.find_element(By.ID, "provenance").text)
        assert not browser.find_element(By.ID, "key-form").is_displayed()
        _look_up(browser, "AK2", "human", FROG)
        _wait(browser, lambda d: _rows(d))
        # This server embeds nothing (--no-embed): a pasted sequence is searched with MMseqs2 alone.
        assert "MMseqs2 search (no weights to embed with)" in browser.find_element(By.ID, "provenance").text
        _paste_sequence(browser, mutated(_human_protein("ETF1"), 0.10), FROG)
        first = _rows(browser)[0]
        assert first[_column(browser, "Symbol")] == "etf1" and first[_column(browser, "Evidence")] == "alignment"
        assert "Cosine" not in [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#results thead th")]
    finally:
        keyed.stop()


def _human_protein(symbol: str) -> str:
    return next(sequence for header, sequence in example_records("human_demo.fasta.gz") if f"GN={symbol} " in header)


def _paste_sequence(driver: WebDriver, sequence: str, target: str) -> None:
    """Open the sequence panel, paste, search, and wait for the rows."""
    if not driver.find_element(By.ID, "sequence").is_displayed():
        driver.find_element(By.CSS_SELECTOR, "#sequence-panel summary").click()
    Select(driver.find_element(By.ID, "to-species")).select_by_value(target)
    box = driver.find_element(By.ID, "sequence")
    box.clear()
    box.send_keys(sequence)
    driver.find_element(By.ID, "search-sequence").click()
    _wait(driver, lambda d: "Genes like the pasted sequence" in d.find_element(By.ID, "results").text, timeout=60)
