"""The whole integration as one library call (what `orthovec integrate` runs).

Outputs of one run (all in `out`, published together by `orthovec.integrate.outputs`):
`shared.h5ad`, `metrics.json`, `umap_species.png`, `umap_celltype.png`, `celltype_agreement.png`,
`correspondence.parquet` + `celltype_correspondence.png`, `markers.parquet` + `markers_dotplot.png`,
`conservation.parquet`, `training_curves.png` (scVI/scANVI), and `orthovec-outputs.json`, the
manifest of the set (what a later run may replace). `metrics.json` and `uns['orthovec']` record the
mapping(s) with their provenance, the features and the correction, so a result can always be
traced to its inputs.

Everything a run can be refused for (labels, cell types no two species share, too few cells, an
output over an input, an output directory holding other files) is checked before any work.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np

from orthovec.core.files import check_output_apart
from orthovec.core.logs import get_logger
from orthovec.integrate.correspondence import correspondence
from orthovec.integrate.features import Features, SpeciesGeneReport, build_shared
from orthovec.integrate.inputs import species_counts
from orthovec.integrate.mappings import SYMBOLS, load_mappings
from orthovec.integrate.markers import conserved_markers, gene_conservation
from orthovec.integrate.metrics import integration_metrics
from orthovec.integrate.outputs import check_replaceable, require_space, staged_output
from orthovec.integrate.plots import (
    agreement_heatmap,
    correspondence_heatmap,
    markers_dotplot,
    training_curves,
    umap_pngs,
)
from orthovec.integrate.process import ProcessConfig, process, require_correction
from orthovec.schemas.errors import Invalid, NotFound
from orthovec.schemas.tables import CELLTYPE_CORRESPONDENCE, CONSERVED_MARKERS, GENE_CONSERVATION, write_table

METRIC_KEYS = ("celltype_asw", "species_asw", "ilisi", "clisi", "ari", "nmi", "graph_connectivity", "label_transfer")
#: Fewest cells a species may bring: its own PCA, 5-fold self-projection and the kNN metrics need them.
MIN_CELLS = 10

logger = get_logger("integrate")


@dataclass(frozen=True)
class IntegrateConfig:
    """Everything a run depends on besides its data and mappings; built once from CLI options."""

    label_key: str = "cell_ontology_class"
    features: Features = "one2one"
    var_key: str | None = None
    reference: str | None = None
    process: ProcessConfig = field(default_factory=ProcessConfig)


def _check_inputs(adatas: dict[str, ad.AnnData], config: IntegrateConfig) -> None:
    """Refuse at once what would fail (or mean nothing) after minutes of work."""
    for name, data in adatas.items():
        if config.label_key not in data.obs:
            raise NotFound(
                f"{name}: no obs column '{config.label_key}'; available: {', '.join(map(str, data.obs)) or 'none'}.",
                param="label_key",
                value=config.label_key,
            )
        if data.n_obs < MIN_CELLS:
            raise Invalid(
                f"{name}: the AnnData has {data.n_obs} cell{'s' if data.n_obs != 1 else ''}; integration needs at "
                f"least {MIN_CELLS} per species (its own PCA, self-projection and neighbour metrics need them)."
            )
        for covariate in config.process.covariates:
            if covariate not in data.obs:
                raise NotFound(
                    f"{name}: no obs column '{covariate}' for the covariate.", param="covariates", value=covariate
                )
    types = {name: set(data.obs[config.label_key].astype(str)) for name, data in adatas.items()}
    if len(set().union(*types.values())) < 2:
        raise Invalid(
            f"has a single value ({next(iter(next(iter(types.values()))))!r}) in every species: cell-type metrics, "
            "transfer and markers need at least two cell types.",
            param="label_key",
            value=config.label_key,
        )
    for a, b in combinations(types, 2):
        if not types[a] & types[b]:
            raise Invalid(
                f"{a} and {b} share no cell type in obs['{config.label_key}'] ({a}: {_some(types[a])}; {b}: "
                f"{_some(types[b])}), so there is nothing to transfer or compare. Harmonise the labels first "
                "(cell ontology names or ids are made for this).",
                param="label_key",
                value=config.label_key,
            )
    labelled = config.process.labelled_species(config.reference or next(iter(adatas)))
    unknown = [name for name in labelled if name not in adatas]
    if unknown:
        raise NotFound(
            "names a species that was not given.", param="scanvi_labels_from", value=",".join(unknown), choices=adatas
        )


def _some(names: set[str], n: int = 4) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:n]) + (f" and {len(ordered) - n} more" if len(ordered) > n else "")


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
    *,
    input_paths: Sequence[Path] = (),
) -> tuple[ad.AnnData, dict[str, Any], list[SpeciesGeneReport]]:
    """Shared AnnData, metrics (also in out/metrics.json), tables, figures and the gene report.

    `mappings` are MAPPING Parquet paths, a multi-species HOMOLOGY_GROUPS table, or `"symbols"` for
    the upper-cased-symbol baseline; species are joined through `config.reference` (default: the
    first species). `input_paths` are the files the AnnData were read from: `out` may not hold them.
    Progress goes to the `orthovec.integrate` logger, data warnings are `DataWarning`s.
    """
    require_correction(config.process.correct)
    mapping_paths = [Path(m) for m in mappings if str(m) != SYMBOLS]
    check_output_apart([out], [*input_paths, *mapping_paths])
    check_replaceable(out)
    _check_inputs(adatas, config)

    counts = {name: species_counts(name, data, config.var_key) for name, data in adatas.items()}
    reference = config.reference or next(iter(adatas))
    mapping, mapping_record, groups_table = load_mappings(
        mappings, {s: c.gene_names for s, c in counts.items()}, reference
    )
    logger.info("matching genes (%s); species joined through the reference species '%s'", config.features, reference)
    shared, reports = build_shared(counts, mapping, config.features, reference, groups_table)
    for report in reports:
        logger.info("%s", report.line())
    correction = process(shared, config.process, config.label_key)
    logger.info("metrics")
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
    logger.info("cell-type correspondence, conserved markers, gene conservation")
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
        logger.info("plots")
        umap_pngs(shared, config.label_key, staging)
        agreement_heatmap(shared, config.label_key, staging)
        correspondence_heatmap(correspondence_table, staging)
        markers_dotplot(shared, markers_table, config.label_key, staging)
        training_curves(shared, staging)
        shared.write_h5ad(staging / "shared.h5ad", compression="gzip")
    return shared, metrics, reports
