"""Shared fixtures: paths to ../shared/data and small stores."""

from __future__ import annotations

import logging
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer ESM-2 in fair-esm's checkpoint layout."""
    from orthovec.embedding.random_weights import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt", "tiny")


@pytest.fixture(scope="session")
def weights_8m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 8M architecture with random weights (30 MB, written once per session)."""
    from orthovec.embedding.random_weights import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("weights") / "esm2_t6_8M_UR50D.pt", "8M")


@pytest.fixture(scope="session")
def demo_atlas(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """The main job's atlas (150 human + 150 frog genes, tiny random model), built once per session.

    Shared read-only: tests that change an atlas build their own.
    """
    from click.testing import CliRunner

    from orthovec.cli import main

    atlas = tmp_path_factory.mktemp("demo") / "atlas"
    result = CliRunner().invoke(main, ["demo", "--weights", str(tiny_weights), "--atlas", str(atlas)])
    assert result.exit_code == 0, result.output
    # The one-to-one calls rest on MMseqs2 alignments (real evidence), so random weights still recover them.
    assert "one-to-one pairs agreeing with DIOPT (7/7 tools): 150 of 150" in result.output and "AK2" in result.output
    assert "These weights are random" in result.output  # the agreement figure measures no biology
    return atlas


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
