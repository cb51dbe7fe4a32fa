"""Click commands of the integrate stage: `integrate` and the `export` group (samap, saturn, biomart).

Only click and the standard library at module level: scanpy, torch and the rest load inside the
command that needs them, so `orthovec --help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from orthovec.core.options import atlas_option, console
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid

if TYPE_CHECKING:
    from orthovec.integrate.features import Features
    from orthovec.integrate.process import Correction

#: Mirrors `orthovec.integrate.process.CORRECTIONS` (kept literal so --help imports no scanpy).
CORRECTIONS = ("harmony", "none", "scvi", "scanvi")


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


def _print_metrics(metrics: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(metrics, indent=2))
        return
    from orthovec.integrate.run import METRIC_KEYS

    rows: list[tuple[str, float]] = []
    for key in (*METRIC_KEYS, "alcs", "overall", "cross_species_neighbour_fraction"):
        value = metrics[key]
        if isinstance(value, dict):
            rows += [(f"label transfer {direction}", accuracy) for direction, accuracy in value.items()]
        else:
            rows.append((key, value))
    if fmt == "tsv":
        click.echo("metric\tvalue")
        for name, value in rows:
            click.echo(f"{name}\t{value:.4f}")
        return
    from rich.table import Table

    table = Table(title=f"integration metrics ({metrics['features']['kind']}, {metrics['correction']['method']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:.3f}")
    console().print(table)


@click.command("integrate")
@click.option(
    "--mapping",
    "mappings",
    multiple=True,
    help="Mapping Parquet (orthovec map / import-homology); repeat for more species pairs. "
    "'symbols' is the upper-cased-symbol baseline (never used unless named).",
)
@click.option(
    "--adata", "adatas", multiple=True, required=True, help="SPECIES=PATH.h5ad with raw counts; one per species."
)
@click.option("--reference", help="Species every other is mapped to (default: the first --adata).")
@click.option("--label-key", default="cell_ontology_class", show_default=True, help="obs column with cell types.")
@click.option("--var-key", help="var column with gene names (default: var_names).")
@click.option("--features", type=click.Choice(["one2one", "groups"]), default="one2one", show_default=True)
@click.option("--correct", type=click.Choice(CORRECTIONS), default="harmony", show_default=True)
@click.option("--max-epochs", type=click.IntRange(1), default=100, show_default=True, help="scVI epochs (at most).")
@click.option("--scanvi-epochs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--scanvi-labels-from", help="The one species whose cell types scANVI sees (default: the reference).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json"]), default="table", show_default=True)
def integrate_command(
    mappings: tuple[str, ...],
    adatas: tuple[str, ...],
    reference: str | None,
    label_key: str,
    var_key: str | None,
    features: str,
    correct: str,
    max_epochs: int,
    scanvi_epochs: int,
    scanvi_labels_from: str | None,
    out: Path,
    fmt: str,
) -> None:
    """Integrate single-cell data of two or more species through gene mappings, correct, and score it.

    Species are joined through one reference species (every other needs a mapping with it). OUT
    receives, all at once when the run succeeds: shared.h5ad, metrics.json, UMAPs, label-transfer
    agreement, correspondence.parquet + celltype_correspondence.png, markers.parquet +
    markers_dotplot.png and conservation.parquet.

    Example: orthovec integrate --mapping ens.parquet --adata human=h.h5ad --adata mouse=m.h5ad --out baron/
    """
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
            scanvi_epochs=scanvi_epochs,
            scanvi_labels_from=scanvi_labels_from,
        ),
    )
    log = console(stderr=True).print
    data = {species: read_adata(Path(path)) for species, path in paths.items()}
    _, metrics, _ = integrate_species(data, list(mappings), out, config, log=lambda m: log(f"[dim]•[/dim] {m}"))
    _print_metrics(metrics, fmt)
    click.echo(f"wrote shared.h5ad, metrics.json, tables and PNG figures in {out}", err=fmt != "table")


@click.group("export")
def export_group() -> None:
    """Write orthovec's evidence in the formats of SAMap, SATURN and Ensembl BioMart.

    Example: orthovec export samap --atlas atlas --species human --species mouse --out maps/
    """


@export_group.command("samap")
@atlas_option
@click.option("--species", "species", multiple=True, required=True, help="Exactly two species.")
@click.option("--id", "ids", multiple=True, help="SPECIES=ID: SAMap's species id (no '_'; default: the name).")
@click.option("--model", help="Embedding model, when falling back to embedding hits (default: the only one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="SAMap's maps/ folder.")
def export_samap_command(
    atlas: Atlas, species: tuple[str, ...], ids: tuple[str, ...], model: str | None, out: Path
) -> None:
    """SAMap's BLAST-tabular maps for a species pair, from alignments (else embedding hits).

    Example: orthovec export samap --atlas atlas --species human --species mouse --id human=hs --id mouse=mm --out maps/
    """
    from orthovec.integrate.export import export_samap

    if len(species) != 2:
        raise Invalid(f"Give --species exactly twice (got {len(species)}).")
    written, evidence = export_samap(atlas, (species[0], species[1]), out, _parse_pairs("--id", ids, "human=hs"), model)
    click.echo(f"wrote {', '.join(map(str, written))} from {evidence}")


@export_group.command("saturn")
@atlas_option
@click.option("--species", required=True)
@click.option("--model", help="Embedding model (default: the species' only one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File for torch.save.")
def export_saturn_command(atlas: Atlas, species: str, model: str | None, out: Path) -> None:
    """SATURN's protein-embedding file: {gene symbol: tensor}, saved with torch.save.

    Example: orthovec export saturn --atlas atlas --species human --out human_embeddings.torch
    """
    from orthovec.integrate.export import export_saturn

    path, n_genes = export_saturn(atlas, species, out, model)
    click.echo(f"wrote {n_genes:,} gene embeddings to {path}")


@export_group.command("biomart")
@click.argument("mapping", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV file.")
def export_biomart_command(mapping: Path, out: Path) -> None:
    """An Ensembl BioMart-style homology CSV from any orthovec mapping table.

    Example: orthovec export biomart atlas/mappings/esm2_t6_8M_UR50D/human__mouse.parquet --out human_mouse.csv
    """
    from orthovec.integrate.export import export_biomart

    path, n_rows = export_biomart(mapping, out)
    click.echo(f"wrote {n_rows:,} homology rows to {path}")


COMMANDS: list[click.Command] = [integrate_command, export_group]
