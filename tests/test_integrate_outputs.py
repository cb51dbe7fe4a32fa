"""An integration's output directory changes as a set: a run killed at any instant leaves the old set whole."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orthovec.integrate.outputs import staged_output
from orthovec.schemas.errors import Invalid, Unavailable

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
    assert (out / "metrics.json").read_bytes() == b"new" and not (out / "shared.h5ad").exists()
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
    with pytest.raises(Invalid, match="orthovec did not write"), staged_output(tmp_path):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's sysfs, which refuses new files")
def test_an_unwritable_parent_is_one_message(tmp_path: Path) -> None:
    """sysfs refuses a new directory even to root (EPERM, or EROFS where it is mounted read-only), so
    this runs in CI as root, where a chmod 555 directory would not stop the write."""
    with pytest.raises(Unavailable, match="cannot be written"), staged_output(Path("/sys/kernel/orthovec-out")):
        pass


def test_a_previous_result_is_replaced_only_when_its_manifest_lists_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out) as staging:
        (staging / "metrics.json").write_text("first")
    assert (out / "orthovec-outputs.json").is_file()
    with staged_output(out) as staging:  # orthovec's own result: replaced
        (staging / "metrics.json").write_text("second")
    assert (out / "metrics.json").read_text() == "second"
    (out / "input.h5ad").write_bytes(b"the user's")
    with pytest.raises(Invalid, match=r"holds files orthovec did not write \(input\.h5ad"), staged_output(out):
        pass
    assert (out / "input.h5ad").read_bytes() == b"the user's" and (out / "metrics.json").read_text() == "second"
