"""`keep_compiled`: XLA programs land in the named folder (in a fresh process: JAX settles on its
cache at its first compile), UMAP's numba functions get a cache, and a JAX cache directory the
caller chose stands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("umap_compiled")  # tests/conftest.py: pynndescent compiled once

SCRIPT = """
import sys
from pathlib import Path

import numpy as np
import scib_metrics
import umap.umap_

from orthovec.integrate.compiled import keep_compiled

keep_compiled(Path(sys.argv[1]))
x = np.random.default_rng(0).normal(size=(40, 5)).astype("float32")
scib_metrics.silhouette_label(x, np.repeat(["a", "b"], 20))
print(umap.umap_.smooth_knn_dist.stats.cache_path)
"""


def test_xla_programs_are_kept_in_the_folder_and_umaps_functions_get_a_cache(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "kept")], env=clean, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    assert len(list((tmp_path / "kept" / "jax").iterdir())) > 5  # the silhouette's programs
    assert printed.split()[-1] != "None"  # numba now has a place for smooth_knn_dist's machine code


def test_a_jax_cache_directory_the_caller_chose_stands(tmp_path: Path) -> None:
    import jax

    from orthovec.integrate.compiled import keep_compiled

    before = jax.config.values.get("jax_compilation_cache_dir")
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    try:
        keep_compiled(tmp_path / "kept")
        assert jax.config.values.get("jax_compilation_cache_dir") == str(tmp_path / "theirs")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
