"""One output convention: every command that prints results takes --format table|tsv|json, and what
it prints is data, never rich markup (issue 19 item 9: a gene symbol `[/]` crashed `query`,
`[red]RED[/red]` printed as "RED")."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.core.logs import OrthovecDeprecationWarning
from orthovec.core.options import Duration, emit_rows, format_duration

EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"

#: Commands that print no result table, and why.
NOT_PRINTING = {
    "serve": "runs the HTTP service until stopped",
    "demo": "a guided tour in numbered steps; its results are files, listed at its end",
}


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    context = click.Context(group)
    found: dict[str, click.Command] = {}
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        if isinstance(command, click.Group):
            found |= _leaf_commands(command, (*prefix, name))
        else:
            found[" ".join((*prefix, name))] = command
    return found


COMMANDS = _leaf_commands(main)


def _offers_every_format(command: click.Command) -> bool:
    option = next((p for p in command.params if isinstance(p, click.Option) and "--format" in p.opts), None)
    if option is None or not isinstance(option.type, click.Choice):
        return False
    return {"table", "tsv", "json"} <= set(option.type.choices) and option.default == "table"


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - set(NOT_PRINTING)))
def test_every_printing_command_offers_table_tsv_and_json(name: str) -> None:
    offers = _offers_every_format(COMMANDS[name])
    assert offers, f"`orthovec {name}` prints results but lacks --format table|tsv|json (default table)"


def test_the_commands_that_print_no_table_are_real_commands() -> None:
    assert set(NOT_PRINTING).issubset(COMMANDS)


def _tsv(output: str) -> list[dict[str, str]]:
    header, *lines = output.rstrip("\n").split("\n")
    columns = header.split("\t")
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == len(columns) for row in rows), output
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_random_weights_prints_in_each_format(tmp_path: Path) -> None:
    runner = CliRunner()
    by_format = {
        fmt: runner.invoke(main, ["random-weights", str(tmp_path / f"{fmt}.pt"), "--arch", "tiny", "--format", fmt])
        for fmt in ("table", "tsv", "json")
    }
    assert all(result.exit_code == 0 for result in by_format.values()), {f: r.output for f, r in by_format.items()}
    [row] = json.loads(by_format["json"].stdout)
    assert row["checkpoint"] == str(tmp_path / "json.pt") and row["arch"] == "tiny" and row["weights"] == "random"
    [line] = _tsv(by_format["tsv"].stdout)
    assert line["checkpoint"] == str(tmp_path / "tsv.pt") and line["model"] == row["model"]
    # The table shows the path whole, below the table, never cut to the terminal's width.
    assert f"checkpoint: {tmp_path / 'table.pt'}" in by_format["table"].stdout


def test_listing_and_query_commands_print_tsv_and_json(demo_atlas: Path) -> None:
    runner = CliRunner()
    query = ["query", "ETF1", "--from", "human", "--to", "xenopus_tropicalis", "-k", "3", "--atlas", str(demo_atlas)]
    hits = json.loads(runner.invoke(main, [*query, "--format", "json"]).stdout)
    rows = _tsv(runner.invoke(main, [*query, "--format", "tsv"]).stdout)
    assert [h["gene_symbol"] for h in hits] == [r["gene_symbol"] for r in rows] and hits[0]["gene_symbol"] == "etf1"
    species = _tsv(runner.invoke(main, ["species", "--atlas", str(demo_atlas), "--format", "tsv"]).stdout)
    assert {row["species"] for row in species} == {"human", "xenopus_tropicalis"}


def test_import_homology_takes_input_format_and_prints_in_each_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the relative --out lands here, not in the repository
    pairs = EXAMPLES / "demo_orthologs.tsv"
    base = ["import-homology", str(pairs), "--from", "human", "--to", "xenopus_tropicalis", "--atlas", str(tmp_path)]
    result = CliRunner().invoke(main, [*base, "--input-format", "pairs", "--format", "json", "--out", "a.parquet"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["pairs"] == 150 and row["mapping"] == "a.parquet"


def test_import_homology_format_biomart_still_chooses_the_input_with_a_deprecation_warning(tmp_path: Path) -> None:
    base = ["import-homology", str(EXAMPLES / "demo_orthologs.tsv"), "--from", "human", "--to", "xenopus_tropicalis"]
    # (pytest records warnings itself; outside it, the CLI prints them on stderr as "Warning: ...")
    with pytest.warns(OrthovecDeprecationWarning, match="--format pairs is deprecated; use --input-format pairs"):
        result = CliRunner().invoke(main, [*base, "--format", "pairs", "--out", str(tmp_path / "old.parquet")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "old.parquet").is_file() and "pairs" in result.stdout  # printed as a table


def test_the_command_line_shows_the_deprecation_on_stderr_and_keeps_stdout_clean(tmp_path: Path) -> None:
    """Outside pytest's own capture: warnings reach the CLI's handler (Python hides DeprecationWarnings
    by default; orthovec's are shown) and print on stderr, so scripts parsing stdout are unaffected."""
    import subprocess
    import sys

    args = ["import-homology", str(EXAMPLES / "demo_orthologs.tsv"), "--from", "human", "--to", "xenopus_tropicalis"]
    args += ["--format", "pairs", "--out", str(tmp_path / "old.parquet")]
    done = subprocess.run([sys.executable, "-m", "orthovec.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning: --format pairs is deprecated; use --input-format pairs" in done.stderr
    assert "deprecated" not in done.stdout and (tmp_path / "old.parquet").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "Missing option '--input-format'"),
        (["--input-format", "biomart", "--format", "pairs"], "--format pairs and --input-format biomart disagree"),
    ],
)
def test_import_homology_without_or_with_two_input_formats_is_a_usage_error(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    base = ["import-homology", str(EXAMPLES / "demo_orthologs.tsv"), "--from", "human", "--to", "xenopus_tropicalis"]
    result = CliRunner().invoke(main, [*base, *extra, "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.parquet").exists()


MARKUP = ["[/]", "[red]RED[/red]", "[bold]x", ":thumbs_up:"]


def test_emit_rows_prints_markup_in_data_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"gene_symbol": symbol, "score": 0.5} for symbol in MARKUP]
    for fmt in ("table", "tsv", "json"):
        emit_rows(rows, fmt, title="[/] hits")
        out = capsys.readouterr().out
        assert all(symbol in out for symbol in MARKUP), (fmt, out)
    emit_rows(rows, "table", title="[red]title[/red]")
    assert "[red]title[/red]" in capsys.readouterr().out


def test_emit_rows_prints_long_paths_whole_below_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    deep = Path("/atlas") / ("d" * 150) / "mappings" / "esm2_t33_650M_UR50D" / "human__mouse.parquet"
    emit_rows([{"pairs": 12, "mapping": deep}, {"pairs": 3, "mapping": deep.with_name("human__rat.parquet")}], "table")
    out = capsys.readouterr().out
    assert f"mapping (12): {deep}" in out and f"mapping (3): {deep.with_name('human__rat.parquet')}" in out
    assert "…" not in out


def test_durations_print_as_durations_in_tables_and_as_seconds_for_programs(capsys: pytest.CaptureFixture[str]) -> None:
    assert [format_duration(s) for s in (0.54, 12.34, 125.2, 3725)] == ["0.54 s", "12.3 s", "2 min 05 s", "1 h 02 min"]
    rows = [{"step": "map", "seconds": Duration(0.54)}, {"step": "align", "seconds": Duration(125.2)}]
    emit_rows(rows, "table")
    table = capsys.readouterr().out
    assert "0.54 s" in table and "2 min 05 s" in table and "0.5400" not in table
    emit_rows(rows, "json")
    assert [row["seconds"] for row in json.loads(capsys.readouterr().out)] == [0.54, 125.2]
    emit_rows(rows, "tsv")
    assert [row["seconds"] for row in _tsv(capsys.readouterr().out)] == ["0.54", "125.2"]


@pytest.fixture(scope="module")
def markup_atlas(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Path:
    """Two species whose gene symbols are rich markup (`[/]`, `[red]RED[/red]`, ...)."""
    import gzip

    from Bio.SeqIO.FastaIO import SimpleFastaParser

    with gzip.open(EXAMPLES / "human_demo.fasta.gz", "rt") as handle:
        sequences = [sequence for _, sequence in SimpleFastaParser(handle)][: len(MARKUP)]
    root = tmp_path_factory.mktemp("markup")
    fasta = root / "markup.fasta"
    fasta.write_text(
        "".join(
            f">sp|P{i:05d}|G{i}_HUMAN Test protein OS=Homo sapiens OX=9606 GN={symbol} PE=1 SV=1\n{sequence}\n"
            for i, (symbol, sequence) in enumerate(zip(MARKUP, sequences, strict=True))
        )
    )
    atlas = root / "atlas"
    for species in ("a", "b"):
        args = ["index", str(fasta), "--species", species, "--weights", str(tiny_weights), "--atlas", str(atlas)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    return atlas


@pytest.mark.parametrize("fmt", ["table", "tsv", "json"])
def test_a_query_for_a_markup_symbol_prints_every_symbol_as_it_is(markup_atlas: Path, fmt: str) -> None:
    args = ["query", "[/]", "--from", "a", "--to", "b", "-k", str(len(MARKUP)), "--format", fmt]
    result = CliRunner().invoke(main, [*args, "--atlas", str(markup_atlas)])
    assert result.exit_code == 0, result.output
    assert all(symbol in result.stdout for symbol in MARKUP), result.stdout


def test_an_error_quoting_markup_prints_it_as_it_is(markup_atlas: Path) -> None:
    result = CliRunner().invoke(main, ["query", "[red]NOPE[/red]", "--from", "a", "--atlas", str(markup_atlas)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "No gene '[red]NOPE[/red]' in a" in result.stderr
