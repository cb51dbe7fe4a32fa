"""Click commands of the integrate stage: `integrate`."""

from __future__ import annotations

from pathlib import Path

import click
import pyarrow as pa
from orthovec.integrate.run import METRIC_KEYS, integrate_species, read_adata
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import MAPPING, read_table
from rich.table import Table

from orthovec.options import console


def _parse_adata(values: tuple[str, ...]) -> dict[str, Path]:
    parsed: dict[str, Path] = {}
    for value in values:
        species, sep, path = value.partition("=")
        if not sep or not species or not path:
            raise UserError(f"--adata {value!r}: expected SPECIES=PATH, for example human=baron_human.h5ad.")
        parsed[species] = Path(path)
    return parsed


@click.command("integrate")
@click.option(
    "--mapping",
    "mappings",
    multiple=True,
    help="Mapping Parquet (orthovec map / import-homology); 'symbols' matches upper-cased gene symbols.",
)
@click.option("--adata", "adatas", multiple=True, required=True, help="SPECIES=PATH.h5ad (raw counts), twice.")
@click.option("--label-key", default="cell_ontology_class", show_default=True, help="obs column with cell types.")
@click.option("--var-key", help="var column with gene names (default: var_names).")
@click.option("--features", type=click.Choice(["one2one", "groups"]), default="one2one", show_default=True)
@click.option("--correct", type=click.Choice(["harmony", "none", "scvi"]), default="harmony", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def integrate_command(
    mappings: tuple[str, ...],
    adatas: tuple[str, ...],
    label_key: str,
    var_key: str | None,
    features: str,
    correct: str,
    out: Path,
) -> None:
    """Build one shared AnnData for two species through a gene mapping, correct, and score it.

    Writes OUT/shared.h5ad, OUT/metrics.json, UMAPs by species and cell type, and a cross-species
    cell-type agreement heatmap. Every gene that cannot be used is counted in the report.
    """
    paths = _parse_adata(adatas)
    if len(paths) != 2:
        raise UserError(f"Give --adata twice, one per species (got {len(paths)}).")
    log = console(stderr=True).print
    tables = [read_table(Path(m), MAPPING) for m in mappings if m != "symbols"]
    mapping = pa.concat_tables(tables, promote_options="permissive") if tables else None
    data = {species: read_adata(path) for species, path in paths.items()}
    _, metrics, _ = integrate_species(
        data,
        mapping,
        out,
        label_key,
        features,
        correct,
        var_key,
        log=lambda m: log(f"[dim]•[/dim] {m}"),  # type: ignore[arg-type]
    )
    table = Table(title=f"integration metrics ({features}, {correct})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in METRIC_KEYS:
        value = metrics[key]
        if isinstance(value, dict):
            for direction, accuracy in value.items():
                table.add_row(f"label transfer {direction}", f"{accuracy:.3f}")
        else:
            table.add_row(key, f"{value:.3f}")
    table.add_row("cross-species neighbours", f"{metrics['cross_species_neighbour_fraction']:.3f}")
    console().print(table)
    click.echo(f"wrote {out / 'shared.h5ad'}, {out / 'metrics.json'} and PNG figures in {out}")


COMMANDS: list[click.Command] = [integrate_command]
