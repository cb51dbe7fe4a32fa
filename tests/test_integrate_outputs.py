"""An integration's output directory changes as a set: a run killed at any instant leaves the old set whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orthovec.integrate.outputs import staged_output
from orthovec.schemas.errors import Invalid

KILLED_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
from orthovec.integrate import outputs

out = Path(sys.argv[1])
with outputs.staged_output(out) as staging:
    (staging / "metrics.json").write_text("new")
    (staging / "shared.h5ad").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from orthovec.integrate import outputs

real_rename = os.rename
calls = []

def rename_then_die(src, dst):
    real_rename(src, dst)
    calls.append(dst)
    if len(calls) == 1:  # the old result is aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)

outputs._exchange = lambda staging, out: False  # systems without renameat2
outputs.os.rename = rename_then_die
with outputs.staged_output(Path(sys.argv[1])) as staging:
    (staging / "metrics.json").write_text("new")
"""


def _old_result(out: Path) -> dict[str, bytes]:
    out.mkdir()
    (out / "metrics.json").write_text("old")
    (out / "shared.h5ad").write_bytes(b"complete old h5ad")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _killed(script: str, out: Path) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(out)], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()


def test_kill_while_writing_keeps_the_old_set_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _old_result(out)
    _killed(KILLED_WHILE_WRITING, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert len(list(tmp_path.glob(".out.*.staging"))) == 1  # the dead run's work, not mixed into out
    with staged_output(out) as staging:
        (staging / "metrics.json").write_text("new")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"metrics.json": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_kill_between_the_two_renames_is_repaired_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _old_result(out)
    _killed(KILLED_BETWEEN_RENAMES, out)
    assert not out.exists() and list(tmp_path.glob(".out.*.old"))
    with pytest.raises(RuntimeError, match="failed run"), staged_output(out):
        raise RuntimeError("failed run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # restored, and the failed run changed nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_directory_of_other_files_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Invalid, match="not an orthovec integration"), staged_output(tmp_path):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_parent_is_one_message(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(Exception, match="cannot be written"), staged_output(tmp_path / "out"):
            pass
    finally:
        tmp_path.chmod(0o755)
