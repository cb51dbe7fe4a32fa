"""Reading a species' AnnData and taking its raw counts with the gene names of the same object.

Counts and names must come from one place: `adata.raw` may hold another gene order (or another
gene set) than `adata.var`, and pairing `raw.X` with `var_names` silently gives one gene the
counts of another. The order of preference is `layers['counts']` (scvi-tools' convention, aligned
with `var`), then `raw` (scanpy's convention, with `raw.var`), then `X`; the gene report records
which one was used.

Hostile input is refused with a message before any work (NaN or negative values, no cells, a
missing column), or accepted with a `DataWarning` that says what was done (non-integer values,
duplicate gene names: the first occurrence is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from orthovec.core.logs import warn_data
from orthovec.schemas.errors import Invalid, NotFound


@dataclass(frozen=True)
class SpeciesCounts:
    """One species' raw counts (cells × genes, CSR), the names of those genes in the same order, and its cells."""

    counts: sp.csr_matrix
    gene_names: pd.Index
    counts_from: str  # "layers['counts']", "raw.X" or "X"
    obs: pd.DataFrame


def read_adata(path: Path) -> ad.AnnData:
    if not Path(path).is_file():
        raise NotFound(f"{path}: file not found.")
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, ValueError) as err:
        raise Invalid(f"{path}: not a readable .h5ad file ({err}).") from err


def species_counts(species: str, data: ad.AnnData, var_key: str | None = None) -> SpeciesCounts:
    """Validated raw counts and their gene names; see the module docstring for the rules."""
    if data.n_obs == 0:
        raise Invalid(f"{species}: the AnnData has 0 cells; give a file with cells to integrate.")
    if "counts" in data.layers:
        matrix, var, counts_from = data.layers["counts"], data.var, "layers['counts']"
    elif data.raw is not None:
        matrix, var, counts_from = data.raw.X, data.raw.var, "raw.X"
    else:
        matrix, var, counts_from = data.X, data.var, "X"
    if var_key is not None and var_key not in var:
        raise Invalid(
            f"{species}: not a column of {counts_from.split('.')[0].split('[')[0]}.var "
            f"(columns: {', '.join(map(str, var.columns)) or 'none'}); leave it out to use var_names.",
            param="var_key",
            value=var_key,
        )
    names = pd.Index(var[var_key].astype(str) if var_key else var.index.astype(str))
    counts = sp.csr_matrix(matrix, dtype=np.float32)
    values = counts.data
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise Invalid(
            f"{species}: {counts_from} holds {bad:,} NaN or infinite values. orthovec needs raw counts; "
            "fill or drop those cells/genes first."
        )
    if (values < 0).any():
        raise Invalid(
            f"{species}: {counts_from} holds {int((values < 0).sum()):,} negative values (min {values.min():.3g}): "
            "it looks scaled or centred. Give raw counts (in X, raw or layers['counts'])."
        )
    if not np.array_equal(values, np.round(values)):
        warn_data(
            f"{species}: {counts_from} holds non-integer values (e.g. {values[values != np.round(values)][0]:.3g}); "
            "they are treated as counts (normalised to 10,000 per cell and log-transformed), which is wrong for "
            "data already normalised. scVI/scANVI model integer counts."
        )
    duplicated = names.duplicated()
    if duplicated.any():
        examples = ", ".join(dict.fromkeys(names[duplicated][:5]))
        warn_data(
            f"{species}: {int(duplicated.sum()):,} duplicate gene names (e.g. {examples}); "
            "the first occurrence of each is used and the others are counted as lost."
        )
    return SpeciesCounts(counts, names, counts_from, data.obs.copy())
