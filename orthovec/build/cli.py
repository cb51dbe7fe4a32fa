"""Click commands for many-species builds: `build` (a manifest → a whole atlas) and `fetch-proteome`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orthovec.core.options import atlas_option, console, output_format, qdrant_options, shard_option
from orthovec.schemas.atlas import Atlas

if TYPE_CHECKING:
    from rich.console import Console

    from orthovec.build.plan import BuildReport
    from orthovec.indexer.pipeline import ProgressFactory


@click.command("build")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@atlas_option
@click.option("--dry-run", is_flag=True, help="Print the plan (each step, and why it would run) and stop.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Independent steps side by side (downloads, alignments, mappings); index steps take turns.",
)
@shard_option("Array task I of N: fetch and embed only.")
@click.option("--refresh-sources", is_flag=True, help="Download remote sources again; unchanged ones redo nothing.")
@qdrant_options()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def build_command(
    manifest: Path,
    atlas: Atlas,
    dry_run: bool,
    jobs: int,
    shard: tuple[int, int] | None,
    refresh_sources: bool,
    qdrant_url: str | None,
    qdrant_api_key: str | None,
    fmt: str,
) -> None:
    """Build (or bring up to date) a whole atlas from MANIFEST: fetch → index (+ store) → align → map → groups.

    Every step whose inputs and settings are unchanged since it last ran is skipped, so a killed
    build resumes where it stopped and a finished one reruns as a no-op; a changed source redoes only
    what depends on it. With --shard I/N (a SLURM array) each task embeds its share of every
    proteome; one last run without --shard assembles, aligns and maps.

    Example: orthovec build atlas.toml --atlas /data/atlas --jobs 2
    """
    from orthovec.build.fetch import FetchConfig
    from orthovec.build.manifest import load_manifest
    from orthovec.build.plan import BuildEvents, BuildOptions, run_build

    loaded = load_manifest(manifest)
    if qdrant_url:  # the command line (or its environment variable) wins over the manifest's qdrant_url
        loaded = dataclasses.replace(loaded, atlas=dataclasses.replace(loaded.atlas, qdrant_url=qdrant_url))
    options = BuildOptions(
        jobs=jobs,
        shard=shard,
        dry_run=dry_run,
        refresh_sources=refresh_sources,
        fetch=FetchConfig.from_environ(os.environ),
        qdrant_api_key=qdrant_api_key,
    )
    log_console = console(stderr=True)
    events = BuildEvents(
        log=lambda line: log_console.print(line, highlight=False, markup=False, emoji=False),
        embedding_progress=_progress(log_console),
    )
    report = run_build(loaded, atlas, options, events)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    _print_report(report)


def _progress(log_console: Console) -> Callable[[str], contextlib.AbstractContextManager[ProgressFactory]]:
    """Per species, a context that starts the embedding bar once the indexer knows the work left."""
    from orthovec.core.progress import WorkProgress

    @contextlib.contextmanager
    def for_species(species: str) -> Iterator[ProgressFactory]:
        with contextlib.ExitStack() as stack:

            def start(total_proteins: int, total_residues: int) -> Callable[[int, int], None]:
                label = f"embedding {species}"
                work = stack.enter_context(WorkProgress(label, total_residues, "residues", log_console))
                return lambda proteins, residues: work.advance(residues, proteins=proteins)

            yield start

    return for_species


def _print_report(report: BuildReport) -> None:
    from rich.table import Table

    out = console()
    if report.dry_run:
        plan = Table(title=f"plan for {report.manifest} → {report.atlas}")
        for column in ("step", "status", "why"):
            plan.add_column(column)
        for outcome in report.outcomes:
            plan.add_row(outcome.step, outcome.status, outcome.reason)
        out.print(plan)
        to_run = sum(o.status == "to run" for o in report.outcomes)
        out.print(f"{to_run} of {len(report.outcomes)} steps would run." if to_run else "Nothing to do.")
        return
    fetched = {o.step.split(":", 1)[1]: o for o in report.of_kind("fetch")}
    species = Table(title="species")
    for column in ("species", "records", "genes", "proteins", "skipped records", "status"):
        species.add_column(column, justify="right" if column in ("records", "genes", "proteins") else "left")
    for outcome in report.of_kind("index"):
        name, info = outcome.step.split(":", 1)[1], outcome.info
        skipped = ", ".join(f"{reason} {count:,}" for reason, count in sorted(info.get("skipped", {}).items()))
        records = info.get("records", fetched[name].info.get("records") if name in fetched else None)
        species.add_row(
            name,
            _count(records),
            _count(info.get("genes")),
            _count(info.get("proteins")),
            skipped or "none",
            outcome.status,
        )
    out.print(species)
    maps = report.of_kind("map")
    if maps:
        aligned = {o.step.split(":", 1)[1]: o.status for o in report.of_kind("align")}
        pairs = Table(title="pairs")
        columns = (
            "pair",
            "evidence",
            "candidates",
            "RBH",
            "1:1 greedy",
            "1:1 optimal",
            "groups",
            "alignment",
            "status",
        )
        for column in columns:
            pairs.add_column(
                column, justify="left" if column in ("pair", "evidence", "alignment", "status") else "right"
            )
        for outcome in maps:
            pair, info = outcome.step.split(":", 1)[1], outcome.info
            pairs.add_row(
                pair.replace("__", " → "),
                str(info.get("evidence", "")),
                _count(info.get("candidates")),
                _count(info.get("rbh")),
                _count(info.get("one2one_greedy")),
                _count(info.get("one2one_optimal")),
                _count(info.get("groups")),
                aligned.get(pair, "off"),
                outcome.status,
            )
        out.print(pairs)
    steps = Table(title="steps")
    for column in ("step", "status", "seconds", "built in (s)", "note"):
        steps.add_column(column, justify="right" if "s)" in column or column == "seconds" else "left")
    for outcome in report.outcomes:
        built = "" if outcome.built_seconds is None else f"{outcome.built_seconds:.1f}"
        steps.add_row(outcome.step, outcome.status, f"{outcome.seconds:.1f}", built, outcome.reason)
    out.print(steps)
    ran = sum(o.status == "ran" for o in report.outcomes)
    if report.nothing_to_do:
        out.print(f"Nothing to do: {report.atlas} is up to date with {report.manifest} ({report.seconds:.1f} s).")
    else:
        out.print(f"{ran} steps ran, {len(report.outcomes) - ran} skipped or waiting, in {report.seconds:.1f} s.")
    for outcome in report.outcomes:
        if outcome.status == "unavailable":
            out.print(f"[yellow]{outcome.step} unavailable[/yellow]: {outcome.reason}")


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


@click.command("fetch-proteome")
@click.argument("source")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the FASTA.")
@click.option("--sha256", help="Expected SHA-256 of the file; a different download is refused.")
@atlas_option
@output_format("table", "json", deprecated_json=True)
def fetch_proteome_command(source: str, out: Path, sha256: str | None, atlas: Atlas, fmt: str) -> None:
    """Download a proteome: a UniProt proteome id, ensembl:SPECIES@RELEASE, or an http(s) URL.

    Transfers resume and retry with backoff; the file is checked (gzip complete, FASTA records,
    no HTML error page, the published checksum where one exists) and kept in ATLAS/cache/downloads
    under its SHA-256 before it is copied to --out. $ORTHOVEC_UNIPROT_URL and $ORTHOVEC_ENSEMBL_URL
    point at mirrors.

    Example: orthovec fetch-proteome UP000005640 --out human.fasta.gz
    """
    from orthovec.build.fetch import FetchConfig, copy_verified, fetch_proteome
    from orthovec.build.manifest import parse_source

    log_console = console(stderr=True)
    parsed = parse_source(source, Path.cwd(), "SOURCE")
    fetched = fetch_proteome(
        parsed,
        atlas.download_cache(),
        FetchConfig.from_environ(os.environ),
        expected_sha256=sha256.lower() if sha256 else None,
        log=lambda line: log_console.print(line, highlight=False, markup=False, emoji=False),
    )
    copy_verified(fetched, out)
    if fmt == "json":  # the provenance record
        click.echo(json.dumps({**fetched.to_dict(), "out": str(out)}, indent=2, default=str))
        return
    click.echo(f"{out}: {fetched.n_records:,} records, sha256 {fetched.sha256} (from {fetched.url or fetched.path})")


COMMANDS: list[click.Command] = [build_command, fetch_proteome_command]
