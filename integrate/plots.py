"""PNG figures of an integration: UMAPs, label-transfer agreement, cell-type correspondence, conserved markers."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import scanpy as sc

from orthovec.integrate.metrics import transfer_matrix


def umap_pngs(shared: ad.AnnData, label_key: str, out: Path) -> list[Path]:
    paths = []
    for key in ("species", label_key):
        fig, ax = plt.subplots(figsize=(7, 5.5))
        sc.pl.umap(shared, color=key, ax=ax, show=False, frameon=False, title=f"UMAP coloured by {key}")
        path = out / f"umap_{'species' if key == 'species' else 'celltype'}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def agreement_heatmap(shared: ad.AnnData, label_key: str, out: Path) -> Path:
    """For each pair of species: fraction of target cells of each type given each transferred label."""
    x = np.asarray(shared.obsm[shared.uns["orthovec"]["embedding"]])
    species = shared.obs["species"].astype(str).to_numpy()
    labels = shared.obs[label_key].astype(str).to_numpy()
    names = list(dict.fromkeys(species))
    pairs = [(a, b) for a in names for b in names if a != b]
    fig, axes = plt.subplots(1, len(pairs), figsize=(8 * len(pairs), 7))
    for ax, (source, target) in zip(np.atleast_1d(axes), pairs, strict=True):
        matrix = transfer_matrix(x, species, labels, source, target)
        image = ax.imshow(matrix.to_numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90, fontsize=8)
        ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=8)
        ax.set_xlabel(f"label transferred from {source}")
        ax.set_ylabel(f"{target} cell type")
        fig.colorbar(image, ax=ax, shrink=0.6, label="fraction of cells")
    path = out / "celltype_agreement.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def correspondence_heatmap(table: pa.Table, out: Path) -> Path:
    """One panel per species pair: score of each cell-type pair, with both types' cell counts on the axes."""
    frame = table.to_pandas()
    pairs = list(frame.groupby(["species_a", "species_b"], sort=False))
    fig, axes = plt.subplots(1, len(pairs), figsize=(8 * len(pairs), 7), squeeze=False)
    for ax, ((a, b), rows) in zip(axes[0], pairs, strict=True):
        matrix = rows.pivot(index="cell_type_a", columns="cell_type_b", values="score")
        n_a = rows.drop_duplicates("cell_type_a").set_index("cell_type_a")["n_cells_a"].reindex(matrix.index)
        n_b = rows.drop_duplicates("cell_type_b").set_index("cell_type_b")["n_cells_b"].reindex(matrix.columns)
        image = ax.imshow(matrix.to_numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(matrix.shape[1]), [f"{t} (n={n})" for t, n in n_b.items()], rotation=90, fontsize=8)
        ax.set_yticks(range(matrix.shape[0]), [f"{t} (n={n})" for t, n in n_a.items()], fontsize=8)
        scores = matrix.to_numpy()
        for i, j in zip(*np.nonzero(scores >= 0.1), strict=True):
            colour = "black" if scores[i, j] > 0.6 else "white"
            ax.text(j, i, f"{scores[i, j]:.2f}", ha="center", va="center", fontsize=6, color=colour)
        ax.set_xlabel(f"{b} cell type (cells)")
        ax.set_ylabel(f"{a} cell type (cells)")
        ax.set_title(f"{a} ↔ {b}: mean share of cross-species neighbours")
        fig.colorbar(image, ax=ax, shrink=0.6, label="correspondence score")
    path = out / "celltype_correspondence.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def markers_dotplot(shared: ad.AnnData, markers: pa.Table, label_key: str, out: Path, per_type: int = 3) -> Path | None:
    """Top conserved markers per cell type, dots per (cell type, species); None when no type is shared."""
    frame = markers.to_pandas()
    top = frame[frame["conserved_rank"] <= per_type].drop_duplicates(["cell_type", "feature"])
    if top.empty:
        return None
    genes = {cell_type: list(rows["feature"]) for cell_type, rows in top.groupby("cell_type", sort=True)}
    cells = shared[shared.obs[label_key].astype(str).isin(list(genes))].copy()
    cells.obs["cell type | species"] = (
        cells.obs[label_key].astype(str) + " | " + cells.obs["species"].astype(str)
    ).astype("category")
    plot = sc.pl.dotplot(
        cells, genes, groupby="cell type | species", use_raw=False, show=False, return_fig=True, standard_scale="var"
    )
    path = out / "markers_dotplot.png"
    plot.savefig(path, dpi=110, bbox_inches="tight")
    plt.close("all")
    return path


def training_curves(shared: ad.AnnData, out: Path) -> Path | None:
    """scVI (and scANVI) ELBO per epoch, training and validation: whether a run converged, at a glance.

    None when the correction trained no model (Harmony, none).
    """
    training = shared.uns.get("orthovec", {}).get("training")
    if not training:
        return None
    fig, axes = plt.subplots(1, len(training), figsize=(6 * len(training), 4.5), squeeze=False)
    for ax, (model, curves) in zip(axes[0], training.items(), strict=True):
        for key in ("elbo_train", "elbo_validation"):
            if key in curves:
                values = np.asarray(curves[key])
                ax.plot(np.arange(1, len(values) + 1), values, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel("ELBO (negative, lower is better)")
        ax.set_title(f"{model} training")
        ax.legend()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
