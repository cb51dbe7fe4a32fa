"""The whole integration as one library call (what `orthovec integrate` runs).

Outputs of one run (all in `--out`, published together by `orthovec.integrate.outputs`):
`shared.h5ad`, `metrics.json`, `umap_species.png`, `umap_celltype.png`, `celltype_agreement.png`,
`correspondence.parquet` + `celltype_correspondence.png`, `markers.parquet` + `markers_dotplot.png`,
`conservation.parquet`. `metrics.json` and `uns['orthovec']` record the mapping(s) with their
provenance, the features and the correction, so a result can always be traced to its inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from orthovec.integrate.correspondence import correspondence
from orthovec.integrate.features import Features, SpeciesGeneReport, build_shared
from orthovec.integrate.inputs import species_counts
from orthovec.integrate.mappings import load_mappings
from orthovec.integrate.markers import conserved_markers, gene_conservation
from orthovec.integrate.metrics import integration_metrics
from orthovec.integrate.outputs import check_replaceable, require_space, staged_output
from orthovec.integrate.plots import agreement_heatmap, correspondence_heatmap, markers_dotplot, umap_pngs
from orthovec.integrate.process import ProcessConfig, process, require_correction
from orthovec.schemas.errors import Invalid, NotFound
from orthovec.schemas.tables import CELLTYPE_CORRESPONDENCE, CONSERVED_MARKERS, GENE_CONSERVATION, write_table

METRIC_KEYS = ("celltype_asw", "species_asw", "ilisi", "clisi", "ari", "nmi", "graph_connectivity", "label_transfer")


@dataclass(frozen=True)
class IntegrateConfig:
    """Everything a run depends on besides its data and mappings; built once from CLI options."""

    label_key: str = "cell_ontology_class"
    features: Features = "one2one"
    var_key: str | None = None
    reference: str | None = None
    process: ProcessConfig = field(default_factory=ProcessConfig)


def _check_labels(adatas: dict[str, ad.AnnData], config: IntegrateConfig) -> None:
    for name, data in adatas.items():
        if config.label_key not in data.obs:
            raise NotFound(
                f"{name}: no obs column '{config.label_key}' (--label-key); available: {', '.join(map(str, data.obs))}."
            )
    labels = pd.concat([d.obs[config.label_key].astype(str) for d in adatas.values()])
    if labels.nunique() < 2:
        raise Invalid(
            f"--label-key '{config.label_key}' has a single value ({labels.iloc[0]!r}) in every species: cell-type "
            "metrics, transfer and markers need at least two cell types. Choose another --label-key."
        )
    labelled = config.process.scanvi_labels_from
    if labelled is not None and labelled not in adatas:
        raise NotFound(f"--scanvi-labels-from {labelled!r} is not one of the --adata species ({', '.join(adatas)}).")


def _h5ad_bytes(shared: ad.AnnData) -> int:
    """Upper bound of shared.h5ad's size before compression: sparse matrices at 12 bytes a value, dense at 4."""
    sparse = shared.X.nnz + shared.layers["counts"].nnz + sum(m.nnz for m in shared.obsp.values())
    dense = sum(np.asarray(m).size for m in shared.obsm.values())
    return 12 * sparse + 4 * dense


def integrate_species(
    adatas: dict[str, ad.AnnData],
    mappings: Sequence[str | Path],
    out: Path,
    config: IntegrateConfig = IntegrateConfig(),
    log: Callable[[str], None] = print,
) -> tuple[ad.AnnData, dict[str, Any], list[SpeciesGeneReport]]:
    """Shared AnnData, metrics (also in out/metrics.json), tables, figures and the gene report.

    `mappings` are MAPPING Parquet paths, or `"symbols"` for the upper-cased-symbol baseline; species
    are joined through `config.reference` (default: the first species).
    """
    require_correction(config.process.correct)
    check_replaceable(out)
    _check_labels(adatas, config)

    def warn(message: str) -> None:
        log(f"warning: {message}")

    counts = {name: species_counts(name, data, config.var_key, warn) for name, data in adatas.items()}
    reference = config.reference or next(iter(adatas))
    mapping, mapping_record = load_mappings(mappings, {s: c.gene_names for s, c in counts.items()}, reference)
    log(f"matching genes ({config.features}); species joined through the reference species '{reference}'")
    shared, reports = build_shared(counts, mapping, config.features, reference)
    for report in reports:
        log(report.line())
    correction = process(shared, config.process, config.label_key, log=log)
    log("metrics")
    metrics: dict[str, Any] = integration_metrics(shared, config.label_key)
    features_record = {
        "kind": config.features,
        "n_features": int(shared.n_vars),
        "reference": reference,
        "genes_kept": {r.species: r.genes_in_features for r in reports},
        "expressed_genes_lost": {r.species: r.expressed_genes_lost for r in reports},
    }
    metrics |= {"mapping": mapping_record, "features": features_record, "correction": correction}
    # h5ad cannot store None or lists of dicts, so the nested records travel as JSON strings.
    shared.uns["orthovec"]["mapping"] = json.dumps(mapping_record)
    shared.uns["orthovec"]["record"] = json.dumps(
        {"mapping": mapping_record, "features": features_record, "correction": correction, "config": asdict(config)}
    )
    log("cell-type correspondence, conserved markers, gene conservation")
    correspondence_table = correspondence(shared, config.label_key)
    markers_table = conserved_markers(shared, config.label_key)
    conservation_table = gene_conservation(shared, config.label_key)
    provenance = {"mapping": mapping_record, "features": config.features, "correction": config.process.correct}
    with staged_output(out) as staging:
        require_space(staging, _h5ad_bytes(shared), "shared.h5ad")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_table(correspondence_table, staging / "correspondence.parquet", CELLTYPE_CORRESPONDENCE, provenance)
        write_table(markers_table, staging / "markers.parquet", CONSERVED_MARKERS, provenance)
        write_table(conservation_table, staging / "conservation.parquet", GENE_CONSERVATION, provenance)
        log("plots")
        umap_pngs(shared, config.label_key, staging)
        agreement_heatmap(shared, config.label_key, staging)
        correspondence_heatmap(correspondence_table, staging)
        markers_dotplot(shared, markers_table, config.label_key, staging)
        shared.write_h5ad(staging / "shared.h5ad", compression="gzip")
    return shared, metrics, reports
