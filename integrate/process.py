"""Standard scanpy processing of the shared AnnData, with batch correction over species.

Counts stay in `layers['counts']`; `X` becomes normalised log1p. Highly variable genes are chosen
with `batch_key='species'` (scanpy's default dispersion method on log data, ranked by how many
species call a gene variable), so a feature variable in only one species does not dominate.
Harmony (harmonypy, the maintained implementation scanpy wraps) corrects PCA over species into
`obsm['X_pca_harmony']`; `none` keeps PCA; scVI and scANVI (scvi-tools, an optional extra) model
the HVG counts with species as the batch. The embedding used downstream is named in
`uns['orthovec']['embedding']`; matrices are stored as float32 (the shared.h5ad stays small).

scVI and scANVI are trained as scIB's benchmark and scvi-tools' tutorials train them: two layers,
30 latent dimensions, a negative-binomial likelihood, scvi-tools' own epoch heuristic (400 epochs
below 20,000 cells, fewer above) with early stopping on the validation ELBO, and scANVI continued
from the scVI model for scvi-tools' default after pre-training (min(10, max(2, scVI epochs / 3))).
The training curves are kept in `uns['orthovec']['training']` (and plotted), so a reader can see
whether a run converged instead of taking an epoch count on trust.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import anndata as ad
import numpy as np
import scanpy as sc

from orthovec.core.logs import get_logger
from orthovec.schemas.errors import Unavailable

Correction = Literal["harmony", "none", "scvi", "scanvi"]
CORRECTIONS: tuple[Correction, ...] = ("harmony", "none", "scvi", "scanvi")
UNLABELLED = "Unknown"
#: The curves kept per model: scvi-tools' history keys (validation ones exist when early stopping holds data out).
CURVES = ("elbo_train", "elbo_validation", "reconstruction_loss_train", "reconstruction_loss_validation")

logger = get_logger("integrate")


@dataclass(frozen=True)
class ProcessConfig:
    """How the shared AnnData is processed and corrected; recorded in `uns['orthovec']['correction']`.

    `max_epochs` / `scanvi_epochs` of None use scvi-tools' own defaults (see the module docstring).
    `covariates` are obs columns of batches inside a species (donors, libraries): Harmony corrects
    them beside the species, scVI takes them as `categorical_covariate_keys`. `scanvi_labels_from`
    names the species whose cell types scANVI sees (the others are unlabelled, so label transfer to
    them is a real prediction); `None` means the reference, and several names (or every species)
    seed scANVI from each of them.
    """

    correct: Correction = "harmony"
    n_top_genes: int = 2000
    n_pcs: int = 50
    seed: int = 0
    max_epochs: int | None = None
    early_stopping: bool = True
    n_latent: int = 30
    n_layers: int = 2
    covariates: tuple[str, ...] = ()
    scanvi_epochs: int | None = None
    scanvi_labels_from: str | tuple[str, ...] | None = None

    def labelled_species(self, reference: str) -> tuple[str, ...]:
        """The species whose cell types scANVI sees."""
        if self.scanvi_labels_from is None:
            return (reference,)
        if isinstance(self.scanvi_labels_from, str):
            return (self.scanvi_labels_from,)
        return tuple(self.scanvi_labels_from)


def require_correction(correct: Correction) -> None:
    """Fail before any work when the correction's optional dependency is missing."""
    if correct in ("scvi", "scanvi") and importlib.util.find_spec("scvi") is None:
        raise Unavailable(
            f"the {correct} correction needs scvi-tools, an optional extra: pip install 'orthovec[scvi]' "
            "(or use the harmony correction)."
        )


def process(shared: ad.AnnData, config: ProcessConfig, label_key: str) -> dict[str, object]:
    """Normalise, select HVGs, PCA, correct, neighbours/UMAP/Leiden in place; returns the correction record.

    Writes `layers['counts']`, `var['highly_variable']`, `obsm['X_pca']` and the corrected embedding
    (`X_pca_harmony`, `X_scvi` or `X_scanvi`; a scANVI run keeps the scVI latent it started from too),
    `obsm['X_umap']`, `obs['leiden']`, and `uns['orthovec']['embedding' | 'correction' | 'training']`
    (training curves: scVI/scANVI only).
    """
    require_correction(config.correct)
    shared.layers["counts"] = shared.X.copy()
    logger.info("normalise + log1p")
    sc.pp.normalize_total(shared, target_sum=1e4)
    sc.pp.log1p(shared)
    n_top = min(config.n_top_genes, shared.n_vars)
    logger.info("highly variable genes across species (%d)", n_top)
    sc.pp.highly_variable_genes(shared, n_top_genes=n_top, batch_key="species")
    n_comps = max(2, min(config.n_pcs, n_top - 1, shared.n_obs - 1))
    logger.info("PCA (%d components)", n_comps)
    sc.pp.pca(shared, n_comps=n_comps, mask_var="highly_variable", random_state=config.seed)
    shared.obsm["X_pca"] = shared.obsm["X_pca"].astype(np.float32)
    started = time.perf_counter()
    record: dict[str, object] = {"method": config.correct, "n_top_genes": n_top, "n_pcs": n_comps}
    embedding = "X_pca"
    if config.correct == "harmony":
        keys = ["species", *config.covariates]
        logger.info("Harmony over %s", " and ".join(keys))
        shared.obsm["X_pca_harmony"] = _harmony(shared, keys, config.seed)
        embedding = "X_pca_harmony"
        record |= {"lambda": 1.0, "max_iter_harmony": 20, "covariates": list(config.covariates)}
    elif config.correct in ("scvi", "scanvi"):
        embedding, details = _scvi(shared, config, label_key)
        record |= details
    record |= {"embedding": embedding, "seconds": round(time.perf_counter() - started, 1)}
    logger.info("neighbours, UMAP, Leiden")
    sc.pp.neighbors(shared, use_rep=embedding, random_state=config.seed)
    sc.tl.umap(shared, random_state=config.seed)
    shared.obsm["X_umap"] = shared.obsm["X_umap"].astype(np.float32)
    sc.tl.leiden(shared, random_state=config.seed, flavor="igraph", n_iterations=2, directed=False)
    shared.uns.setdefault("orthovec", {})["embedding"] = embedding
    shared.uns["orthovec"]["correction"] = record
    return record


def _harmony(shared: ad.AnnData, keys: list[str], seed: int) -> np.ndarray:
    """harmonypy directly (scanpy's wrapper assumes the pre-2.0 (pcs × cells) output layout).

    With its defaults, harmonypy 2.1 declares convergence after one round on the Baron human/mouse
    pair and barely moves the species (1.6% cross-species neighbours); classic Harmony settings
    (lambda 1, up to 20 rounds, tight tolerance) give 18.9% on the same PCA. Covariates (donors)
    are further batch variables of the same run, as Harmony's own `vars_use` takes them: on Baron
    the donors inside each species are batches too, and leaving them in holds the species apart.
    """
    import harmonypy

    batches = shared.obs[keys].astype(str)  # donors may be numbers; Harmony wants categories
    result = harmonypy.run_harmony(
        shared.obsm["X_pca"],
        batches,
        keys,
        lamb=[1.0] * len(keys),
        max_iter_harmony=20,
        epsilon_harmony=1e-6,
        random_state=seed,
        verbose=False,
    )
    corrected = np.asarray(result.Z_corr, dtype=np.float32)
    return corrected if corrected.shape[0] == shared.n_obs else corrected.T


def _curves(history: dict[str, Any]) -> dict[str, np.ndarray]:
    """scvi-tools' per-epoch history (one-column DataFrames) as plain arrays, for uns and the plot."""
    return {key: history[key].to_numpy(dtype=np.float64).ravel() for key in CURVES if key in history}


def _convergence(curves: dict[str, np.ndarray], max_epochs: int) -> dict[str, object]:
    """Epochs run, whether early stopping ended training, and how much the monitored ELBO still moved.

    `elbo_change_last_tenth` is the relative change of the (validation, else training) ELBO over the
    last tenth of the epochs: near 0 means the curve is flat where training stopped.
    """
    monitored = curves.get("elbo_validation", curves.get("elbo_train", np.empty(0)))
    epochs = len(curves.get("elbo_train", monitored))
    tail = max(2, epochs // 10)
    change = float("nan")
    if len(monitored) >= tail:
        before, after = monitored[-tail], monitored[-1]
        change = float((before - after) / abs(before)) if before else float("nan")
    return {
        "epochs": epochs,
        "max_epochs": int(max_epochs),
        "stopped_early": epochs < max_epochs,
        "elbo_change_last_tenth": round(change, 5),
    }


def _scvi(shared: ad.AnnData, config: ProcessConfig, label_key: str) -> tuple[str, dict[str, object]]:
    """scVI over species on the HVG counts; scANVI continues from it with the chosen species' labels."""
    import scvi
    from scvi.model._utils import get_max_epochs_heuristic

    scvi.settings.seed = config.seed
    progress = sys.stderr.isatty()  # Lightning's epoch bar on a terminal; logs stay clean
    model_input = shared[:, shared.var["highly_variable"]].copy()
    covariates = list(config.covariates) or None
    max_epochs = config.max_epochs or get_max_epochs_heuristic(model_input.n_obs)
    logger.info(
        "scVI over species%s (%d epochs at most%s)",
        f" with covariates {', '.join(config.covariates)}" if covariates else "",
        max_epochs,
        ", early stopping on the validation ELBO" if config.early_stopping else "",
    )
    scvi.model.SCVI.setup_anndata(
        model_input, layer="counts", batch_key="species", categorical_covariate_keys=covariates
    )
    model = scvi.model.SCVI(model_input, n_latent=config.n_latent, n_layers=config.n_layers, gene_likelihood="nb")
    started = time.perf_counter()
    model.train(max_epochs=max_epochs, early_stopping=config.early_stopping, enable_progress_bar=progress)
    curves = {"scvi": _curves(model.history)}
    shared.obsm["X_scvi"] = model.get_latent_representation().astype(np.float32)
    scvi_epochs = len(curves["scvi"]["elbo_train"])
    details: dict[str, object] = {
        "n_latent": config.n_latent,
        "n_layers": config.n_layers,
        "covariates": list(config.covariates),
        "scvi": _convergence(curves["scvi"], max_epochs) | {"seconds": round(time.perf_counter() - started, 1)},
        "scvi_epochs": scvi_epochs,
    }
    if config.correct == "scvi":
        shared.uns.setdefault("orthovec", {})["training"] = curves
        return "X_scvi", details
    reference = str(shared.uns["orthovec"]["reference"])
    labelled = config.labelled_species(reference)
    seen = shared.obs[label_key].astype(str).where(shared.obs["species"].isin(labelled), UNLABELLED)
    model_input.obs["scanvi_label"] = seen.to_numpy()
    scanvi_epochs = config.scanvi_epochs or int(min(10, max(2, round(scvi_epochs / 3.0))))
    logger.info("scANVI with the cell types of %s (%d epochs)", ", ".join(labelled), scanvi_epochs)
    scanvi = scvi.model.SCANVI.from_scvi_model(
        model, adata=model_input, labels_key="scanvi_label", unlabeled_category=UNLABELLED
    )
    started = time.perf_counter()
    scanvi.train(max_epochs=scanvi_epochs, n_samples_per_label=100, enable_progress_bar=progress)
    curves["scanvi"] = _curves(scanvi.history)
    shared.obsm["X_scanvi"] = scanvi.get_latent_representation().astype(np.float32)
    shared.uns.setdefault("orthovec", {})["training"] = curves
    return "X_scanvi", details | {
        "scanvi_epochs": scanvi_epochs,
        "scanvi_labels_from": ",".join(labelled),
        "scanvi": _convergence(curves["scanvi"], scanvi_epochs) | {"seconds": round(time.perf_counter() - started, 1)},
    }
