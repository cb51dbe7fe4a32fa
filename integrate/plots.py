"""PNG figures of an integration: UMAPs by species and cell type, cross-species agreement heatmap."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
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
