"""The main job (`orthovec demo`) and the query/load commands through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.schemas.api import Homolog

EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"


def test_demo_leaves_two_species_a_mapping_and_a_store(demo_atlas: Path) -> None:
    listing = json.loads(CliRunner().invoke(main, ["species", "--atlas", str(demo_atlas), "--format", "json"]).output)
    assert {(row["species"], row["genes"]) for row in listing} == {
        ("human", 150),
        ("xenopus_tropicalis", 150),
    }
    assert list((demo_atlas / "mappings").glob("*/human__xenopus_tropicalis.parquet"))


def test_query_json_has_the_contract_keys(demo_atlas: Path) -> None:
    query = ["query", "ETF1", "--from", "human", "--to", "xenopus_tropicalis", "-k", "4", "--atlas", str(demo_atlas)]
    result = CliRunner().invoke(main, [*query, "--format", "json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 4 and [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert {"species", "gene_id", "gene_symbol", "score", "rank", "is_rbh", "margin"} <= set(hits[0])
    assert {"query", "query_species", "query_gene_id", "query_gene_symbol", *Homolog.model_fields} == set(hits[0])
    assert all(h["species"] == "xenopus_tropicalis" and h["query"] == "ETF1" for h in hits)
    # The aligned partner `map` calls one-to-one comes first, with its alignment evidence.
    assert hits[0]["gene_symbol"] == "etf1" and hits[0]["is_one2one"] and hits[0]["evidence"] == "both"
    assert hits[0]["evalue"] < 1e-30 and hits[0]["identity"] > 0.5 and hits[0]["score"] > 1


def test_query_prints_a_table_per_target_with_its_evidence(demo_atlas: Path) -> None:
    result = CliRunner().invoke(main, ["query", "ETF1", "--from", "human", "-k", "3", "--atlas", str(demo_atlas)])
    assert result.exit_code == 0, result.output
    assert "homologs of human ETF1 in xenopus_tropicalis (fused evidence, mapping" in result.stdout
    assert "one2one" in result.stdout and "E-value" in result.stdout


def _frog_protein() -> tuple[str, str]:
    """(symbol, sequence) of the first frog protein of the demo."""
    import gzip

    from Bio.SeqIO.FastaIO import SimpleFastaParser

    with gzip.open(EXAMPLES / "xenopus_tropicalis_demo.fasta.gz", "rt") as handle:
        header, sequence = next(SimpleFastaParser(handle))
    return header.split("GN=")[1].split()[0], sequence


def test_query_by_sequence_searches_and_embeds_with_the_atlas_weights(demo_atlas: Path, tiny_weights: Path) -> None:
    """A frog protein's own sequence finds that frog gene first: identical by MMseqs2, cosine 1."""
    symbol, sequence = _frog_protein()
    query = ["query", "--sequence", sequence, "--to", "xenopus_tropicalis", "--weights", str(tiny_weights)]
    result = CliRunner().invoke(main, [*query, "--format", "json", "--atlas", str(demo_atlas)])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)[0]
    assert top["gene_symbol"] == symbol and top["evidence"] == "both" and top["bsr"] == pytest.approx(1.0)
    assert top["identity"] == pytest.approx(1.0) and top["embedding_score"] == pytest.approx(1.0, abs=1e-4)


def test_query_with_other_weights_than_the_atlas_is_refused(demo_atlas: Path, tmp_path: Path) -> None:
    from orthovec.embedding.random_weights import write_random_checkpoint

    other = write_random_checkpoint(tmp_path / "other.pt", "tiny", seed=1)  # same shape, other weights
    result = CliRunner().invoke(
        main,
        ["query", "--sequence", "MKV", "--to", "human", "--weights", str(other), "--atlas", str(demo_atlas)],
    )
    assert result.exit_code == 2 and "would not be comparable" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NOPE1", "--from", "human"], "No gene 'NOPE1' in human"),
        (["ETF1", "--from", "humna"], "Did you mean human"),
        (["ETF1"], "Add --from SPECIES"),
        ([], "exactly one of GENE"),
        (["--sequence", "MK*V1", "--to", "human"], "not amino-acid letters"),
    ],
)
def test_query_mistakes_are_clear_errors(demo_atlas: Path, tiny_weights: Path, args: list[str], message: str) -> None:
    extra = ["--weights", str(tiny_weights)] if "--sequence" in args else []
    result = CliRunner().invoke(main, ["query", *args, *extra, "--atlas", str(demo_atlas)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_load_pushes_the_atlas_to_a_qdrant_client_store_without_duplicates(demo_atlas: Path, tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'qdrant'}"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["load", "--atlas", str(demo_atlas), "--qdrant-url", url, "--format", "json"])
        assert result.exit_code == 0, result.output
    loaded = {row["species"]: row for row in json.loads(result.output)}
    assert (loaded["human"]["model"], loaded["human"]["genes"], loaded["human"]["stale_removed"]) == (
        "esm2_t2_d64_custom",
        150,
        0,
    )
    query = ["query", "ETF1", "--from", "human", "--to", "xenopus_tropicalis", "--format", "json"]
    hits = runner.invoke(main, [*query, "--qdrant-url", url, "--atlas", str(demo_atlas)])
    embedded = runner.invoke(main, [*query, "--atlas", str(demo_atlas)])
    server_ids = [h["gene_id"] for h in json.loads(hits.stdout)]
    assert server_ids == [h["gene_id"] for h in json.loads(embedded.stdout)]  # same code path, same answer


def test_fasta_queries_print_one_shape_for_all_records(demo_atlas: Path, tmp_path: Path) -> None:
    """Several records: one TSV header, one flat JSON list whose hits name their query record."""
    import gzip

    with gzip.open(EXAMPLES / "xenopus_tropicalis_demo.fasta.gz", "rt") as handle:
        records = handle.read().split(">")[1:3]
    fasta = tmp_path / "two.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write("".join(">" + record for record in records))
    ids = [record.split()[0].split("|")[1] for record in records]
    base = ["query", "--fasta", str(fasta), "--to", "xenopus_tropicalis", "-k", "2", "--atlas", str(demo_atlas)]
    tsv = CliRunner().invoke(main, [*base, "--format", "tsv"])
    assert tsv.exit_code == 0, tsv.output
    lines = tsv.stdout.strip().splitlines()
    assert lines[0].startswith("query\tquery_species") and sum(line.startswith("query\t") for line in lines) == 1
    assert len(lines) == 1 + 2 * 2
    hits = json.loads(CliRunner().invoke(main, [*base, "--format", "json"]).stdout)
    assert isinstance(hits, list) and [h["query"] for h in hits] == [ids[0], ids[0], ids[1], ids[1]]
    assert [h["query_gene_id"] for h in hits] == [h["query"] for h in hits]


def test_sequence_queries_find_the_weights_the_atlas_was_indexed_with(demo_atlas: Path) -> None:
    """No --weights: the atlas remembers its checkpoint (and its sha256 is still checked)."""
    symbol, sequence = _frog_protein()
    query = ["query", "--sequence", sequence, "--to", "xenopus_tropicalis", "--format", "json"]
    result = CliRunner().invoke(main, [*query, "--atlas", str(demo_atlas)])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 10 and hits[0]["gene_symbol"] == symbol
    assert hits[0]["embedding_score"] == pytest.approx(1.0, abs=1e-4)  # embedded with the remembered weights


def test_machine_readable_output_is_one_format_option_everywhere(demo_atlas: Path) -> None:
    """--format tsv|json on listing commands; the older --json flag still means --format json."""
    tsv = CliRunner().invoke(main, ["species", "--atlas", str(demo_atlas), "--format", "tsv"])
    assert tsv.exit_code == 0, tsv.output
    header, *rows = tsv.output.strip().splitlines()
    assert header.split("\t")[:3] == ["species", "model", "genes"] and len(rows) == 2
    mapping = next((demo_atlas / "mappings").glob("*/human__xenopus_tropicalis.parquet"))
    truth = EXAMPLES / "demo_orthologs.tsv"
    base = ["evaluate-mapping", str(mapping), "--truth", str(truth), "--truth-format", "pairs"]
    new, old = (CliRunner().invoke(main, [*base, *flag]) for flag in (["--format", "json"], ["--json"]))
    assert new.exit_code == 0, new.output
    assert json.loads(new.output) == json.loads(old.output) and "precision" in json.loads(new.output)
