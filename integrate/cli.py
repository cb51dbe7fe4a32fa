"""Click commands of the integrate stage: `integrate` and the `export` group (samap, saturn, biomart).

Only click and the standard library at module level: scanpy, torch and the rest load inside the
command that needs them, so `orthovec --help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from orthovec.core.options import atlas_option, emit_rows, number_option, output_format
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid

if TYPE_CHECKING:
    from orthovec.integrate.features import Features
    from orthovec.integrate.process import Correction

#: Where compiled UMAP and XLA kernels are kept between runs (`orthovec.integrate.compiled`).
COMPILE_CACHE_ENV = "ORTHOVEC_COMPILE_CACHE"

#: Mirror `orthovec.integrate.process.CORRECTIONS` and `features.FEATURES` (literal so --help imports no scanpy).
CORRECTIONS = ("harmony", "none", "scvi", "scanvi")
FEATURES = ("one2one", "groups", "graph")


def _parse_pairs(option: str, values: tuple[str, ...], example: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise Invalid(f"{option} {value!r}: expected NAME=VALUE, for example {example}.")
        if key in parsed:
            raise Invalid(f"{option} names '{key}' twice; give each species once.")
        parsed[key] = rest
    return parsed


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """metrics.json's headline figures, one row each (the composition-aware mixing beside the raw one)."""
    from orthovec.integrate.run import METRIC_KEYS

    rows: list[dict[str, Any]] = []
    keys = (
        *METRIC_KEYS,
        "alcs",
        "overall",
        "cross_species_neighbour_fraction",
        "cross_species_neighbour_ceiling",
        "mixing_of_possible",
    )
    for key in keys:
        value = metrics[key]
        if isinstance(value, dict):
            rows += [{"metric": f"label transfer {pair}", "value": accuracy} for pair, accuracy in value.items()]
        else:
            rows.append({"metric": key, "value": value})
    return rows


@click.command("integrate")
@click.option(
    "--mapping",
    "mappings",
    multiple=True,
    help="Mapping Parquet (orthovec map / import-homology); repeat for more species pairs. A multi-species "
    "groups__A__B__C.parquet (with --features groups) joins every species at once. 'symbols' is the "
    "upper-cased-symbol baseline (never used unless named).",
)
@click.option(
    "--adata", "adatas", multiple=True, required=True, help="SPECIES=PATH.h5ad with raw counts; one per species."
)
@click.option("--reference", help="Species every other is mapped to (default: the first --adata).")
@click.option("--label-key", default="cell_ontology_class", show_default=True, help="obs column with cell types.")
@click.option("--var-key", help="var column with gene names (default: var_names).")
@click.option(
    "--features",
    type=click.Choice(FEATURES),
    default="one2one",
    show_default=True,
    help="one2one pairs; groups of homologs summed; graph: expression projected through the weighted homology graph.",
)
@click.option("--correct", type=click.Choice(CORRECTIONS), default="harmony", show_default=True)
@number_option(
    "--max-epochs", rule="max_epochs", help="scVI epochs at most [default: scvi-tools' heuristic, 400 below 20k cells]."
)
@click.option(
    "--early-stopping/--no-early-stopping",
    default=True,
    show_default=True,
    help="Stop scVI when the validation ELBO stops improving.",
)
@click.option(
    "--covariate",
    "covariates",
    multiple=True,
    help="obs column of batches inside a species (e.g. donor), corrected by Harmony or given to scVI as a "
    "categorical covariate; repeatable.",
)
@number_option(
    "--scanvi-epochs", rule="scanvi_epochs", help="scANVI epochs [default: scvi-tools', min(10, scVI epochs / 3)]."
)
@click.option(
    "--scanvi-labels-from",
    multiple=True,
    help="Species whose cell types scANVI sees (default: the reference); repeat for several.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--compile-cache",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=COMPILE_CACHE_ENV,
    help="Where UMAP's and the metrics' compiled kernels are kept, so a later run skips ~15 s of compiling "
    f"[env {COMPILE_CACHE_ENV}; default: $XDG_CACHE_HOME/orthovec/compiled or ~/.cache/orthovec/compiled].",
)
@output_format()
def integrate_command(
    mappings: tuple[str, ...],
    adatas: tuple[str, ...],
    reference: str | None,
    label_key: str,
    var_key: str | None,
    features: str,
    correct: str,
    max_epochs: int | None,
    early_stopping: bool,
    covariates: tuple[str, ...],
    scanvi_epochs: int | None,
    scanvi_labels_from: tuple[str, ...],
    out: Path,
    compile_cache: Path | None,
    fmt: str,
) -> None:
    """Integrate single-cell data of two or more species through gene mappings, correct, and score it.

    Species are joined through one reference species (every other needs a mapping with it), or all
    at once through a multi-species groups table. OUT receives, all at once when the run succeeds:
    shared.h5ad, metrics.json, UMAPs, label-transfer agreement, correspondence.parquet +
    celltype_correspondence.png, markers.parquet + markers_dotplot.png, conservation.parquet,
    training_curves.png (scVI/scANVI) and orthovec-outputs.json (the manifest: a later run replaces
    only those files, and refuses a directory holding others).

    Example: orthovec integrate --mapping ens.parquet --adata human=h.h5ad --adata mouse=m.h5ad --out baron/
    """
    from orthovec.integrate.compiled import default_compile_cache, keep_compiled
    from orthovec.integrate.inputs import read_adata
    from orthovec.integrate.process import ProcessConfig, require_correction
    from orthovec.integrate.run import IntegrateConfig, integrate_species

    require_correction(cast("Correction", correct))  # before reading any data

    paths = _parse_pairs("--adata", adatas, "human=baron_human.h5ad")
    config = IntegrateConfig(
        label_key=label_key,
        features=cast("Features", features),
        var_key=var_key,
        reference=reference,
        process=ProcessConfig(
            correct=cast("Correction", correct),
            max_epochs=max_epochs,
            early_stopping=early_stopping,
            covariates=covariates,
            scanvi_epochs=scanvi_epochs,
            scanvi_labels_from=scanvi_labels_from or None,
        ),
    )
    data = {species: read_adata(Path(path)) for species, path in paths.items()}
    keep_compiled(compile_cache or default_compile_cache())
    _, metrics, _ = integrate_species(
        data, list(mappings), out, config, input_paths=[Path(path) for path in paths.values()]
    )
    if fmt == "json":
        click.echo(json.dumps(metrics, indent=2))
        return
    title = f"integration metrics ({metrics['features']['kind']}, {metrics['correction']['method']})"
    emit_rows(_metric_rows(metrics), fmt, title=title)
    click.echo(f"wrote shared.h5ad, metrics.json, tables and PNG figures in {out}", err=fmt != "table")


@click.group("export")
def export_group() -> None:
    """Write orthovec's evidence in the formats of SAMap, SATURN and Ensembl BioMart.

    Example: orthovec export samap --atlas atlas --species human --species mouse --out maps/
    """


@export_group.command("samap")
@atlas_option
@click.option("--species", "species", multiple=True, required=True, help="Exactly two species.")
@click.option(
    "--id", "ids", multiple=True, help="SPECIES=ID: SAMap's species id (letters and digits; default: the name)."
)
@click.option("--model", help="Embedding model, when falling back to embedding hits (default: the only one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="SAMap's maps/ folder.")
@output_format()
def export_samap_command(
    atlas: Atlas, species: tuple[str, ...], ids: tuple[str, ...], model: str | None, out: Path, fmt: str
) -> None:
    """SAMap's BLAST-tabular maps for a species pair, from alignments (else embedding hits).

    Example: orthovec export samap --atlas atlas --species human --species mouse --id human=hs --id mouse=mm --out maps/
    """
    from orthovec.integrate.export import export_samap

    if len(species) != 2:
        raise Invalid(f"Give --species exactly twice (got {len(species)}).")
    written, evidence = export_samap(atlas, (species[0], species[1]), out, _parse_pairs("--id", ids, "human=hs"), model)
    rows = [{"file": path.name, "lines": lines, "evidence": evidence, "path": path} for path, lines in written]
    emit_rows(rows, fmt, title="SAMap maps")


@export_group.command("saturn")
@atlas_option
@click.option("--species", required=True)
@click.option("--model", help="Embedding model (default: the species' only one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File for torch.save.")
@output_format()
def export_saturn_command(atlas: Atlas, species: str, model: str | None, out: Path, fmt: str) -> None:
    """SATURN's protein-embedding file: {gene symbol: tensor}, saved with torch.save.

    Example: orthovec export saturn --atlas atlas --species human --out human_embeddings.torch
    """
    from orthovec.integrate.export import export_saturn

    path, n_genes = export_saturn(atlas, species, out, model)
    emit_rows([{"species": species, "genes": n_genes, "path": path}], fmt, title="SATURN gene embeddings")


@export_group.command("biomart")
@click.argument("mapping", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV file.")
@output_format()
def export_biomart_command(mapping: Path, out: Path, fmt: str) -> None:
    """An Ensembl BioMart-style homology CSV from any orthovec mapping table.

    Example: orthovec export biomart atlas/mappings/esm2_t6_8M_UR50D/human__mouse.parquet --out human_mouse.csv
    """
    from orthovec.integrate.export import export_biomart

    path, n_rows = export_biomart(mapping, out)
    emit_rows([{"homology rows": n_rows, "path": path}], fmt, title="BioMart homology CSV")


COMMANDS: list[click.Command] = [integrate_command, export_group]
