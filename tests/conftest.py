"""Shared fixtures: paths to ../shared/data and small stores."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file from ../shared/data, or a skip with the reason when this checkout has none."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"needs {path} (../shared/data is not beside this checkout)")
    return path


@pytest.fixture(autouse=True)
def _logging_as_the_library_leaves_it() -> Iterator[None]:
    """Undo what an in-process command line did to the `orthovec` logger (`attach_cli_handler`: a
    console handler, no propagation), so a later test's `caplog` sees what a library user would,
    whatever ran before it. Warnings stay routed through logging once routed: turning that off would
    make the next command turn it on inside a `pytest.warns` block, which then records nothing."""
    yield
    from orthovec.core.logs import ROOT

    root = logging.getLogger(ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.propagate = True
    root.setLevel(logging.NOTSET)
    captured = logging.getLogger("py.warnings")
    for handler in list(captured.handlers):
        captured.removeHandler(handler)


def _session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary root, above each pytest-xdist worker's own."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels_kept_for_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`orthovec integrate` keeps compiled UMAP and XLA kernels in the user's cache; the tests keep
    theirs in the session's root instead (every worker and every command it starts: the first to
    compile them saves ~15 s of CPU for each later process), and leave the user's cache alone."""
    from orthovec.integrate.cli import COMPILE_CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(COMPILE_CACHE_ENV, str(_session_root(tmp_path_factory) / "compiled"))
        yield


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """`build(folder)` run once per test session, however many pytest-xdist workers ask for it.

    Session fixtures are per worker: four workers built the demo atlas four times, a minute of the
    suite's CPU. The first worker builds it under the session's shared temporary root, holding a
    lock there; the others wait for the lock and find it done. What is built this way is read-only.
    """
    root = _session_root(tmp_path_factory)
    folder = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def umap_compiled(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`import umap` compiles pynndescent's ~40 numba kernels (17 s of CPU), and a first UMAP its own
    (~10 s), until numba has cached them beside their sources: in a fresh environment every worker
    that integrated did both at once. The first worker to ask does them under the session's lock,
    on a small float32 embedding as the integration's are; the others wait, then load the cached
    kernels. Modules that integrate use it (`pytestmark`)."""

    def compile_once(folder: Path) -> None:
        import anndata as ad
        import numpy as np
        import scanpy as sc

        from orthovec.integrate.cli import COMPILE_CACHE_ENV
        from orthovec.integrate.compiled import keep_compiled

        keep_compiled(Path(os.environ[COMPILE_CACHE_ENV]))  # the session's, set by the fixture above
        cells = ad.AnnData(np.random.default_rng(0).normal(size=(60, 10)).astype(np.float32))
        sc.pp.neighbors(cells, use_rep="X", random_state=0)
        sc.tl.umap(cells, random_state=0)

    built_once(tmp_path_factory, "umap", compile_once)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer ESM-2 in fair-esm's checkpoint layout."""
    from orthovec.embedding.random_weights import write_random_checkpoint

    name = "tiny.pt"
    return built_once(tmp_path_factory, "tiny", lambda folder: write_random_checkpoint(folder / name, "tiny")) / name


@pytest.fixture(scope="session")
def weights_8m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 8M architecture with random weights (30 MB, written once per session)."""
    from orthovec.embedding.random_weights import write_random_checkpoint

    name = "esm2_t6_8M_UR50D.pt"
    return built_once(tmp_path_factory, "8m", lambda folder: write_random_checkpoint(folder / name, "8M")) / name


@pytest.fixture(scope="session")
def demo_atlas(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """The main job's atlas (150 human + 150 frog genes, tiny random model), built once per session.

    Shared read-only within a worker: tests that change an atlas build their own.
    """
    from click.testing import CliRunner

    from orthovec.cli import main

    def build(folder: Path) -> None:
        result = CliRunner().invoke(main, ["demo", "--weights", str(tiny_weights), "--atlas", str(folder / "atlas")])
        assert result.exit_code == 0, result.output
        # The one-to-one calls rest on MMseqs2 alignments (real evidence), so random weights still recover them.
        assert "one-to-one pairs agreeing with DIOPT (7/7 tools): 150 of 150" in result.output
        assert "AK2" in result.output
        assert "These weights are random" in result.output  # the agreement figure measures no biology

    # Each worker gets its own copy: tests write into it (a k-mer index on the first sequence
    # search, a server's record, store locks), which workers must not share.
    own = tmp_path_factory.mktemp("demo") / "atlas"
    shutil.copytree(built_once(tmp_path_factory, "demo", build) / "atlas", own, symlinks=True)
    return own


#: The example proteomes shipped with the package (`orthovec demo`'s inputs).
EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"


def example_records(name: str) -> list[tuple[str, str]]:
    """(header, sequence) of every record of a shipped example FASTA (`human_demo.fasta.gz`...)."""
    import gzip

    from Bio.SeqIO.FastaIO import SimpleFastaParser

    with gzip.open(EXAMPLES / name, "rt") as handle:
        return list(SimpleFastaParser(handle))


def human_sequences(n: int) -> list[str]:
    """The first n human Swiss-Prot sequences (skips when ../shared/data is absent)."""
    import gzip

    from Bio.SeqIO.FastaIO import SimpleFastaParser

    sequences: list[str] = []
    with gzip.open(shared_file("proteomes/human_sprot2014.fasta.gz"), "rt") as handle:
        for _, sequence in SimpleFastaParser(handle):
            sequences.append(sequence)
            if len(sequences) == n:
                break
    return sequences


#: The test files that take longest (`pytest --durations`), handed to the pytest-xdist workers
#: first (`--dist loadfile` keeps a file on one worker and deals files out in collection order):
#: dealt out in name order, the SLURM, browser and build files started last and one worker ran
#: alone for the suite's final minute.
SLOW_FILES = (
    "test_build.py",
    "test_integrate_run.py",
    "test_databases.py",
    "test_slurm.py",
    "test_align.py",
    "test_web_browser.py",
    "test_public_api.py",
    "test_integrate_guards.py",
    "test_homologs.py",
    "test_embed.py",
    "test_index_pipeline.py",
    "test_integrity_index.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow files first, the rest in their order; tests keep their order inside a file."""
    gone = [name for name in SLOW_FILES if not (Path(__file__).parent / name).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py SLOW_FILES names files that do not exist: {gone}")
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
