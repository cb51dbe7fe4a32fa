"""The whole integration as one library call (what `orthovec integrate` runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import pyarrow as pa
from orthovec.integrate.features import Features, SpeciesGeneReport, build_shared, symbol_mapping
from orthovec.integrate.metrics import integration_metrics
from orthovec.integrate.plots import agreement_heatmap, umap_pngs
from orthovec.integrate.process import Correction, process
from orthovec.schemas.errors import UserError

METRIC_KEYS = ("celltype_asw", "species_asw", "ilisi", "clisi", "ari", "nmi", "graph_connectivity", "label_transfer")


def read_adata(path: Path) -> ad.AnnData:
    if not Path(path).is_file():
        raise UserError(f"{path}: file not found.")
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, ValueError) as err:
        raise UserError(f"{path}: not a readable .h5ad file ({err}).") from err


def integrate_species(
    adatas: dict[str, ad.AnnData],
    mapping: pa.Table | None,
    out: Path,
    label_key: str,
    features: Features = "one2one",
    correct: Correction = "harmony",
    var_key: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[ad.AnnData, dict[str, object], list[SpeciesGeneReport]]:
    """Shared AnnData, metrics (also in out/metrics.json), figures and the gene report."""
    for name, data in adatas.items():
        if label_key not in data.obs:
            raise UserError(
                f"{name}: no obs column '{label_key}' (--label-key); available: {', '.join(map(str, data.obs))}."
            )
    log(f"matching genes ({features})")
    shared, reports = build_shared(
        adatas, mapping if mapping is not None else symbol_mapping(adatas), features, var_key
    )
    for report in reports:
        log(report.line())
    shared = process(shared, correct, log=log)
    log("metrics")
    metrics = integration_metrics(shared, label_key)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log("plots")
    umap_pngs(shared, label_key, out)
    agreement_heatmap(shared, label_key, out)
    shared.write_h5ad(out / "shared.h5ad")
    return shared, metrics, reports
