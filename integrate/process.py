"""Standard scanpy processing of the shared AnnData, with batch correction over species.

Counts stay in `layers['counts']`; `X` becomes normalised log1p. Highly variable genes are chosen
with `batch_key='species'` (scanpy's default dispersion method on log data, ranked by how many
species call a gene variable), so a feature variable in only one species does not dominate.
Harmony (harmonypy, the maintained implementation scanpy wraps) corrects PCA over species into
`obsm['X_pca_harmony']`; `none` keeps PCA; scVI is an optional extra. The embedding used
downstream is named in `uns['orthovec']['embedding']`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anndata as ad
import numpy as np
import scanpy as sc
from orthovec.schemas.errors import UserError

Correction = Literal["harmony", "none", "scvi"]


def process(
    shared: ad.AnnData,
    correct: Correction = "harmony",
    n_top_genes: int = 2000,
    n_pcs: int = 50,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> ad.AnnData:
    shared.layers["counts"] = shared.X.copy()
    log("normalise + log1p")
    sc.pp.normalize_total(shared, target_sum=1e4)
    sc.pp.log1p(shared)
    n_top = min(n_top_genes, shared.n_vars)
    log(f"highly variable genes across species ({n_top})")
    sc.pp.highly_variable_genes(shared, n_top_genes=n_top, batch_key="species")
    n_comps = max(2, min(n_pcs, n_top - 1, shared.n_obs - 1))
    log(f"PCA ({n_comps} components)")
    sc.pp.pca(shared, n_comps=n_comps, mask_var="highly_variable", random_state=seed)
    embedding = "X_pca"
    if correct == "harmony":
        log("Harmony over species")
        shared.obsm["X_pca_harmony"] = _harmony(shared, seed)
        embedding = "X_pca_harmony"
    elif correct == "scvi":
        embedding = _scvi(shared, seed, log)
    log("neighbours, UMAP, Leiden")
    sc.pp.neighbors(shared, use_rep=embedding, random_state=seed)
    sc.tl.umap(shared, random_state=seed)
    sc.tl.leiden(shared, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    shared.uns.setdefault("orthovec", {})["embedding"] = embedding
    shared.uns["orthovec"]["correction"] = correct
    return shared


def _harmony(shared: ad.AnnData, seed: int) -> np.ndarray:
    """harmonypy directly (scanpy's wrapper assumes the pre-2.0 (pcs × cells) output layout).

    With its defaults, harmonypy 2.1 declares convergence after one round on the Baron human/mouse
    pair and barely moves the species (1.6% cross-species neighbours); classic Harmony settings
    (lambda 1, up to 20 rounds, tight tolerance) give 18.9% on the same PCA.
    """
    import harmonypy

    result = harmonypy.run_harmony(
        shared.obsm["X_pca"],
        shared.obs[["species"]],
        "species",
        lamb=1.0,
        max_iter_harmony=20,
        epsilon_harmony=1e-6,
        random_state=seed,
        verbose=False,
    )
    corrected = np.asarray(result.Z_corr)
    return corrected if corrected.shape[0] == shared.n_obs else corrected.T


def _scvi(shared: ad.AnnData, seed: int, log: Callable[[str], None]) -> str:
    try:
        import scvi
    except ImportError as err:
        raise UserError("--correct scvi needs scvi-tools: pip install 'orthovec[scvi]'.") from err
    log("scVI over species")
    scvi.settings.seed = seed
    model_input = shared[:, shared.var["highly_variable"]].copy()
    scvi.model.SCVI.setup_anndata(model_input, layer="counts", batch_key="species")
    model = scvi.model.SCVI(model_input)
    model.train(max_epochs=200, early_stopping=True)
    shared.obsm["X_scvi"] = model.get_latent_representation()
    return "X_scvi"
