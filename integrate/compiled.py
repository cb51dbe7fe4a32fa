"""Compiled kernels kept between runs: UMAP's numba functions and scib-metrics' XLA programs.

Every `orthovec integrate` process compiled them afresh, ~10 s of numba (UMAP's fuzzy simplicial
set and layout) and ~5 s of XLA (the silhouettes) on two cores: more than the whole integration of
a small dataset (`orthovec integrate` of the tiny three-species Baron files: 32.1 s, 17.6 s with
both kept). numba keeps a function's machine code only when its author asked for it
(`cache=True`, which umap does not), and JAX's persistent cache is off until a directory is
named. Neither changes a result:
numba's cache is keyed by the function's source and argument types, JAX's by the program and
its compile options.

Both settings are global to the process, so the library never turns them on by itself: the
command line, which owns its process, calls `keep_compiled`, and so can a Python caller.
"""

from __future__ import annotations

import os
from pathlib import Path

from orthovec.core.logs import get_logger

logger = get_logger("integrate")

#: The umap modules whose jitted functions an integration compiles (scanpy's neighbours and UMAP).
UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.spectral", "umap.sparse")


def default_compile_cache() -> Path:
    """`$XDG_CACHE_HOME/orthovec/compiled`, else `~/.cache/orthovec/compiled`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "orthovec" / "compiled"


def keep_compiled(folder: Path) -> None:
    """Keep XLA programs under `folder/jax` and UMAP's numba functions where numba keeps its cache.

    A JAX cache directory the caller set already stands. numba writes beside umap's sources (its
    `__pycache__`), else in its per-user cache; it has no per-call directory, and moving its whole
    cache (`NUMBA_CACHE_DIR`) would make every library that already caches compile again.
    """
    import importlib

    import jax
    from numba.core.registry import CPUDispatcher

    if jax.config.values.get("jax_compilation_cache_dir") is None:
        jax.config.update("jax_compilation_cache_dir", str(folder / "jax"))
        # The silhouettes are ~200 programs of well under the default 1 s each: keep them all.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    dispatchers = [
        value
        for name in UMAP_MODULES
        for value in vars(importlib.import_module(name)).values()
        if isinstance(value, CPUDispatcher)
    ]
    try:
        for dispatcher in dispatchers:
            dispatcher.enable_caching()
    except RuntimeError as error:  # numba found no writable place: UMAP compiles as it did
        logger.info("UMAP's compiled functions are not kept: %s", error)
        return
    logger.debug("compiled kernels kept: XLA under %s, %d UMAP functions by numba", folder / "jax", len(dispatchers))
