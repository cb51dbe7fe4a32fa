"""The cluster recipe on a real SLURM (issue 20 item 3): an `sbatch --array` of three `build --shard`
tasks and a dependent finish job build the three-proteome manifest, and the atlas equals a
single-machine build, table by table.

The test starts its own one-node cluster (munged, slurmctld, slurmd, as root, on free ports with a
private munge socket and state directory, so it never meets another cluster on the machine) and
skips, saying why, where it cannot (`.ci/slurm-deps` installs Debian's slurm-wlm and munge).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.diverged import diverged_proteomes
from tests.test_build import _alignments, _build, _tables

HUMAN_DEMO = Path(__file__).resolve().parents[1] / "orthovec" / "examples" / "human_demo.fasta.gz"
#: Three species from the shipped human example: as it is, and with 10% and 20% of residues changed.
SPECIES = ("human", "near", "far")
RECORDS = 12
TASKS = 3
#: How long the whole array and its finish job may take on two loaded cores before the test fails.
JOBS_TIMEOUT_S = 600
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def _log_tail(folder: Path) -> str:
    return " | ".join(
        f"{path.name}: {' / '.join(path.read_text(errors='replace').splitlines()[-3:])}"
        for path in sorted(folder.glob("*.log"))
    )


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running one-node SLURM cluster; yields the environment that points its commands at it."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs SLURM and munge ({', '.join(missing)} not found; `.ci/slurm-deps` installs them)")
    if os.geteuid() != 0:
        pytest.skip("needs root to start munged, slurmctld and slurmd")
    home = tmp_path_factory.mktemp("slurm")
    for name in ("munge", "state", "spool", "log"):
        (home / name).mkdir()
    munge_socket = home / "munge" / "socket"
    if len(str(munge_socket)) > 100:
        pytest.skip(f"the munge socket path {munge_socket} is too long for a unix socket")
    key = _run("mungekey", "--create", f"--keyfile={home / 'munge' / 'key'}", "--force")
    munged = _run(
        "munged",
        "--force",
        f"--socket={munge_socket}",
        f"--key-file={home / 'munge' / 'key'}",
        f"--log-file={home / 'log' / 'munged.log'}",
        f"--pid-file={home / 'munge' / 'pid'}",
        f"--seed-file={home / 'munge' / 'seed'}",
    )
    if key.returncode or munged.returncode:
        pytest.skip(f"munged did not start: {(key.stderr + munged.stderr).strip()[:300]}")
    node = _run("slurmd", "-C").stdout.splitlines()[0]
    config = home / "slurm.conf"
    config.write_text(
        "\n".join(
            [
                "ClusterName=orthovec",
                f"SlurmctldHost={socket.gethostname()}",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                f"StateSaveLocation={home / 'state'}",
                f"SlurmdSpoolDir={home / 'spool'}",
                f"SlurmctldPidFile={home / 'slurmctld.pid'}",
                f"SlurmdPidFile={home / 'slurmd.pid'}",
                f"SlurmctldLogFile={home / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={home / 'log' / 'slurmd.log'}",
                # no cgroups: the test runs in containers that do not delegate them
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "SwitchType=switch/none",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "JobCompType=jobcomp/none",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "InactiveLimit=0",
                "MinJobAge=300",
                "KillWait=5",
                f"{node} State=UNKNOWN",
                # several tasks on one small node, as on a shared login node: the cores are oversubscribed
                "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8",
            ]
        )
        + "\n"
    )
    env = {**os.environ, "SLURM_CONF": str(config)}
    started = [_run(daemon, "-f", str(config), env=env) for daemon in ("slurmctld", "slurmd")]
    try:
        deadline = time.monotonic() + 120  # the daemons start slowly on a loaded machine (the suite's own load)
        while "idle" not in _run("sinfo", "-h", "-o", "%T", env=env).stdout:
            if time.monotonic() > deadline or any(result.returncode for result in started):
                pytest.skip(f"SLURM did not come up: {_log_tail(home / 'log')[:400]}")
            time.sleep(0.5)
        yield env
    finally:
        _run("scontrol", "shutdown", env=env)
        _run("munged", "--stop", f"--socket={munge_socket}")
        for pid_file in (home / "slurmctld.pid", home / "slurmd.pid"):  # a daemon that ignored the shutdown
            if pid_file.is_file() and pid_file.read_text().strip().isdigit():
                pid = int(pid_file.read_text())
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, 15)


def _manifest(folder: Path, weights: Path) -> Path:
    sources = diverged_proteomes(HUMAN_DEMO, SPECIES, folder / "sources", records=RECORDS, step=0.1)
    species = "".join(f'\n[[species]]\nname = "{name}"\nsource = "{path}"\n' for name, path in sources.items())
    path = folder / "atlas.toml"
    path.write_text(f'[atlas]\nweights = "{weights}"\nalign = true\nalign_threads = 1\n{species}')
    return path


def _sbatch(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["sbatch", "--parsable", *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def test_an_sbatch_array_and_a_finish_job_build_the_same_atlas_as_one_machine(
    slurm: dict[str, str], tmp_path: Path, tiny_weights: Path
) -> None:
    manifest = _manifest(tmp_path, tiny_weights)
    atlas, out = tmp_path / "cluster-atlas", tmp_path / "out"
    out.mkdir()
    build = f"{sys.executable} -m orthovec.cli build {manifest} --atlas {atlas} --format json"
    # The recipe of docs/build.md: one array task per shard, then one unsharded run after all of them.
    array = _sbatch(
        slurm,
        f"--array=0-{TASKS - 1}",
        "--cpus-per-task=1",
        f"--output={out}/task-%a.json",
        f"--error={out}/task-%a.log",
        f"--wrap={build} --shard $SLURM_ARRAY_TASK_ID/{TASKS}",
    )
    _sbatch(
        slurm,
        f"--dependency=afterany:{array}",
        f"--output={out}/finish.json",
        f"--error={out}/finish.log",
        f"--wrap={build} && touch {out}/finished",
    )
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while _run("squeue", "-h", env=slurm).stdout.strip():
        assert time.monotonic() < deadline, f"jobs still queued after {JOBS_TIMEOUT_S} s"
        time.sleep(1)
    logs = {path.name: path.read_text() for path in sorted(out.glob("*.log"))}
    assert (out / "finished").exists(), logs

    tasks = [json.loads((out / f"task-{i}.json").read_text()) for i in range(TASKS)]
    ran = [o["step"] for task in tasks for o in task["outcomes"] if o["status"] == "ran"]
    pairs = ("human__near", "human__far", "near__far")
    # the array did the pairwise work, each alignment once, and the search databases once each
    assert sorted(step for step in ran if step.startswith("align:")) == sorted(f"align:{pair}" for pair in pairs)
    assert sorted(step for step in ran if step.startswith("database:")) == [f"database:{s}" for s in sorted(SPECIES)]
    finish = {o["step"]: o["status"] for o in json.loads((out / "finish.json").read_text())["outcomes"]}
    assert {finish[f"align:{pair}"] for pair in pairs} == {"up to date"}  # the finish job only did what was left
    assert finish["groups"] == "ran"

    reference = tmp_path / "one-machine"
    _build(manifest, reference, jobs=3)
    expected, got = _tables(reference), _tables(atlas)
    assert sorted(got) == sorted(expected) and len(got) == 3 + 3 + 1  # genes, pair mappings, groups
    for name, table in expected.items():
        assert got[name].equals(table), name
    assert _alignments(atlas).keys() == _alignments(reference).keys() and len(_alignments(atlas)) == 3
    for name, table in _alignments(reference).items():
        assert _alignments(atlas)[name].equals(table), name
