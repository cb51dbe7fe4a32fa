"""Standard scanpy processing of the shared AnnData, with batch correction over species.

Counts stay in `layers['counts']`; `X` becomes normalised log1p. Highly variable genes are chosen
with `batch_key='species'` (scanpy's default dispersion method on log data, ranked by how many
species call a gene variable), so a feature variable in only one species does not dominate.
Harmony (harmonypy, the maintained implementation scanpy wraps) corrects PCA over species into
`obsm['X_pca_harmony']`; `none` keeps PCA; scVI and scANVI (scvi-tools, an optional extra) model
the HVG counts with species as the batch. The embedding used downstream is named in
`uns['orthovec']['embedding']`; matrices are stored as float32 (the shared.h5ad stays small).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import scanpy as sc

from orthovec.schemas.errors import Unavailable

Correction = Literal["harmony", "none", "scvi", "scanvi"]
CORRECTIONS: tuple[Correction, ...] = ("harmony", "none", "scvi", "scanvi")
UNLABELLED = "Unknown"


@dataclass(frozen=True)
class ProcessConfig:
    """How the shared AnnData is processed and corrected; recorded in `uns['orthovec']['correction']`.

    `scanvi_labels_from` names the one species whose cell types scANVI sees (the others are
    unlabelled), so label transfer to the others is a real prediction; `None` means the reference.
    """

    correct: Correction = "harmony"
    n_top_genes: int = 2000
    n_pcs: int = 50
    seed: int = 0
    max_epochs: int = 100
    scanvi_epochs: int = 20
    scanvi_labels_from: str | None = None


def require_correction(correct: Correction) -> None:
    """Fail before any work when the correction's optional dependency is missing."""
    if correct in ("scvi", "scanvi") and importlib.util.find_spec("scvi") is None:
        raise Unavailable(
            f"--correct {correct} needs scvi-tools, an optional extra: pip install 'orthovec[scvi]' "
            "(or use --correct harmony)."
        )


def process(
    shared: ad.AnnData,
    config: ProcessConfig,
    label_key: str,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, object]:
    """Normalise, select HVGs, PCA, correct, neighbours/UMAP/Leiden in place; returns the correction record.

    Writes `layers['counts']`, `var['highly_variable']`, `obsm['X_pca']` and the corrected embedding
    (`X_pca_harmony`, `X_scvi` or `X_scanvi`), `obsm['X_umap']`, `obs['leiden']`, and
    `uns['orthovec']['embedding' | 'correction']`.
    """
    require_correction(config.correct)
    shared.layers["counts"] = shared.X.copy()
    log("normalise + log1p")
    sc.pp.normalize_total(shared, target_sum=1e4)
    sc.pp.log1p(shared)
    n_top = min(config.n_top_genes, shared.n_vars)
    log(f"highly variable genes across species ({n_top})")
    sc.pp.highly_variable_genes(shared, n_top_genes=n_top, batch_key="species")
    n_comps = max(2, min(config.n_pcs, n_top - 1, shared.n_obs - 1))
    log(f"PCA ({n_comps} components)")
    sc.pp.pca(shared, n_comps=n_comps, mask_var="highly_variable", random_state=config.seed)
    shared.obsm["X_pca"] = shared.obsm["X_pca"].astype(np.float32)
    started = time.perf_counter()
    record: dict[str, object] = {"method": config.correct, "n_top_genes": n_top, "n_pcs": n_comps}
    embedding = "X_pca"
    if config.correct == "harmony":
        log("Harmony over species")
        shared.obsm["X_pca_harmony"] = _harmony(shared, config.seed)
        embedding = "X_pca_harmony"
        record |= {"lambda": 1.0, "max_iter_harmony": 20}
    elif config.correct in ("scvi", "scanvi"):
        embedding, details = _scvi(shared, config, label_key, log)
        record |= details
    record |= {"embedding": embedding, "seconds": round(time.perf_counter() - started, 1)}
    log("neighbours, UMAP, Leiden")
    sc.pp.neighbors(shared, use_rep=embedding, random_state=config.seed)
    sc.tl.umap(shared, random_state=config.seed)
    shared.obsm["X_umap"] = shared.obsm["X_umap"].astype(np.float32)
    sc.tl.leiden(shared, random_state=config.seed, flavor="igraph", n_iterations=2, directed=False)
    shared.uns.setdefault("orthovec", {})["embedding"] = embedding
    shared.uns["orthovec"]["correction"] = record
    return record


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
    corrected = np.asarray(result.Z_corr, dtype=np.float32)
    return corrected if corrected.shape[0] == shared.n_obs else corrected.T


def _scvi(
    shared: ad.AnnData, config: ProcessConfig, label_key: str, log: Callable[[str], None]
) -> tuple[str, dict[str, object]]:
    """scVI over species on the HVG counts; scANVI continues from it with one species' labels."""
    import scvi

    scvi.settings.seed = config.seed
    progress = sys.stderr.isatty()  # Lightning's epoch bar on a terminal; logs stay clean
    model_input = shared[:, shared.var["highly_variable"]].copy()
    log(f"scVI over species ({config.max_epochs} epochs max, early stopping)")
    scvi.model.SCVI.setup_anndata(model_input, layer="counts", batch_key="species")
    model = scvi.model.SCVI(model_input, n_latent=30, gene_likelihood="nb")
    model.train(max_epochs=config.max_epochs, early_stopping=True, enable_progress_bar=progress)
    details: dict[str, object] = {"scvi_epochs": len(model.history["elbo_train"])}
    if config.correct == "scvi":
        shared.obsm["X_scvi"] = model.get_latent_representation().astype(np.float32)
        return "X_scvi", details
    labelled = config.scanvi_labels_from or str(shared.uns["orthovec"]["reference"])
    seen = shared.obs[label_key].astype(str).where(shared.obs["species"] == labelled, UNLABELLED)
    model_input.obs["scanvi_label"] = seen.to_numpy()
    log(f"scANVI with {labelled}'s cell types only ({config.scanvi_epochs} epochs)")
    scanvi = scvi.model.SCANVI.from_scvi_model(
        model, adata=model_input, labels_key="scanvi_label", unlabeled_category=UNLABELLED
    )
    scanvi.train(max_epochs=config.scanvi_epochs, n_samples_per_label=100, enable_progress_bar=progress)
    shared.obsm["X_scanvi"] = scanvi.get_latent_representation().astype(np.float32)
    return "X_scanvi", details | {"scanvi_epochs": config.scanvi_epochs, "scanvi_labels_from": labelled}
