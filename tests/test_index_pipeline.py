"""`orthovec index` end to end: outputs, resumability after SIGKILL, re-indexing, shards, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from orthovec.cli import main
from orthovec.core.faults import FAULT_ENV
from orthovec.indexer.pipeline import EmbeddingCache, IndexConfig
from orthovec.indexing import index_proteome
from orthovec.lookup.store import open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import GENES, read_provenance, read_table

EXAMPLES = Path(__file__).resolve().parents[1] / "orthovec" / "examples"
HUMAN_DEMO = EXAMPLES / "human_demo.fasta.gz"


def _index(atlas: Path, weights: Path, *extra: str, fasta: Path = HUMAN_DEMO, species: str = "human") -> object:
    args = [
        "index",
        str(fasta),
        "--species",
        species,
        "--weights",
        str(weights),
        "--atlas",
        str(atlas),
        *extra,
    ]
    return CliRunner().invoke(main, args)


def _genes(atlas: Path, model: str = "esm2_t2_d64_custom", species: str = "human") -> object:
    return read_table(Atlas(atlas).genes(species, model), GENES)


def test_index_writes_gene_vectors_with_provenance_and_loads_the_store(tmp_path: Path, tiny_weights: Path) -> None:
    result = _index(tmp_path / "atlas", tiny_weights)
    assert result.exit_code == 0, result.output
    genes = _genes(tmp_path / "atlas")
    assert genes.num_rows == 150
    assert genes.schema.field("embedding").type.list_size == 64
    assert set(genes.column_names) >= {"species", "gene_id", "gene_symbol", "n_proteins", "embedding"}
    provenance = read_provenance(Atlas(tmp_path / "atlas").genes("human", "esm2_t2_d64_custom"))
    assert provenance["pooling"] == "mean" and provenance["layer"] == 2 and len(provenance["weights_sha256"]) == 64
    store = open_store(Atlas(tmp_path / "atlas"))
    assert store.species_counts("esm2_t2_d64_custom") == {"human": 150}
    store.close()
    listing = CliRunner().invoke(main, ["species", "--atlas", str(tmp_path / "atlas"), "--format", "json"])
    assert '"genes": 150' in listing.output and '"proteins": 150' in listing.output


def test_reindexing_reuses_embeddings_and_never_duplicates(tmp_path: Path, tiny_weights: Path) -> None:
    atlas = Atlas(tmp_path / "atlas")
    first = index_proteome(IndexConfig(fasta=HUMAN_DEMO, species="human", atlas=atlas, weights=tiny_weights))
    again = index_proteome(IndexConfig(fasta=HUMAN_DEMO, species="human", atlas=atlas, weights=tiny_weights))
    assert first.n_embedded_sequences == 150 and again.n_embedded_sequences == 0
    assert again.n_cached_sequences == 150
    store = open_store(atlas)
    assert store.species_counts(first.model) == {"human": 150}
    store.close()


def test_a_sigkilled_run_resumes_to_the_same_output(tmp_path: Path, tiny_weights: Path) -> None:
    uninterrupted = tmp_path / "uninterrupted"
    assert _index(uninterrupted, tiny_weights, "--chunk-residues", "4000").exit_code == 0

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "orthovec.cli", "index", str(HUMAN_DEMO), "--species", "human"]
    command += ["--weights", str(tiny_weights), "--atlas", str(killed), "--chunk-residues", "4000"]
    env = {**os.environ, FAULT_ENV: "after-chunk:3"}  # SIGKILL right after the third chunk is cached
    process = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    assert process.returncode == -signal.SIGKILL
    cache = killed / "cache" / "embeddings"
    assert len(list(cache.glob("*/chunk-*.parquet"))) == 3
    assert not Atlas(killed).genes("human", "esm2_t2_d64_custom").exists()

    resumed = _index(killed, tiny_weights, "--chunk-residues", "4000", "--json")
    assert resumed.exit_code == 0, resumed.output
    a = pq.read_table(Atlas(uninterrupted).genes("human", "esm2_t2_d64_custom"))
    b = pq.read_table(Atlas(killed).genes("human", "esm2_t2_d64_custom"))
    assert a.equals(b)  # bit-identical, not merely close
    assert sorted(p.name for p in cache.glob("*/chunk-*")) == sorted(
        p.name for p in (uninterrupted / "cache" / "embeddings").glob("*/chunk-*")
    )


def test_shards_split_the_work_and_the_last_assembles(tmp_path: Path, tiny_weights: Path) -> None:
    atlas = Atlas(tmp_path / "atlas")
    config = {
        "fasta": HUMAN_DEMO,
        "species": "human",
        "atlas": atlas,
        "weights": tiny_weights,
        "chunk_residues": 3000,
    }
    first = index_proteome(IndexConfig(**config, shard=(0, 2)))
    assert not first.complete and 0 < first.chunks_missing < first.chunks_total
    assert not atlas.genes("human", first.model).exists()
    second = index_proteome(IndexConfig(**config, shard=(1, 2)))
    assert second.complete and second.n_embedded_sequences + first.n_embedded_sequences == 150
    whole = tmp_path / "whole"
    assert _index(whole, tiny_weights).exit_code == 0
    sharded = _genes(tmp_path / "atlas")
    reference = _genes(whole)
    assert sharded.column("gene_id").equals(reference.column("gene_id"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "2/2"], "expected I/N with 0 <= I < N"),
        (["--species", "bad/name"], "--species bad/name: is not a usable species name"),
        (["--species", "a__b"], "'__' separates the two species in pair file names"),
        (["--taxid", "0"], "--taxid"),
        (["--taxid", "-5"], "--taxid"),
        (["--taxid", "99999999999999999999"], "expected an integer >= 1 and <= 2147483647"),
        (["--model", "esm2_t6_8M_UR50D"], "not esm2_t6_8M_UR50D"),
    ],
)
def test_user_errors_exit_non_zero_without_a_traceback(
    tmp_path: Path, tiny_weights: Path, extra: list[str], message: str
) -> None:
    result = _index(tmp_path / "atlas", tiny_weights, *extra)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_a_file_that_is_not_fasta_fails_cleanly_through_the_cli(tmp_path: Path, tiny_weights: Path) -> None:
    csv = tmp_path / "genes.csv"
    csv.write_text("gene,protein\nTP53,P04637\n")
    result = _index(tmp_path / "atlas", tiny_weights, fasta=csv)
    assert result.exit_code == 2 and "not a FASTA file" in result.output


def test_listing_an_atlas_that_does_not_exist_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["species", "--atlas", str(tmp_path / "none")])
    assert result.exit_code == 2 and "orthovec index" in result.output


def test_a_sequence_missing_from_the_embedding_cache_is_named_not_zero_filled(
    tmp_path: Path, tiny_weights: Path
) -> None:
    assert _index(tmp_path / "atlas", tiny_weights).exit_code == 0
    (cache_dir,) = (tmp_path / "atlas" / "cache" / "embeddings").iterdir()
    known = pq.read_table(next(cache_dir.glob("chunk-*.parquet")), columns=["seq_hash"]).column(0)[0].as_py()
    cache = EmbeddingCache(cache_dir)
    assert cache.lookup([known]).shape == (1, 64)
    with pytest.raises(UserError, match=r"1 embedded sequences are missing from the cache.*orthovec index"):
        cache.lookup([known, "0" * 64])


def test_bf16_precision_is_recorded_cached_apart_and_close_to_fp32(tmp_path: Path, tiny_weights: Path) -> None:
    assert _index(tmp_path / "fp32", tiny_weights, "--precision", "fp32").exit_code == 0
    result = _index(tmp_path / "bf16", tiny_weights, "--precision", "bf16")
    assert result.exit_code == 0, result.output
    provenance = read_provenance(Atlas(tmp_path / "bf16").genes("human", "esm2_t2_d64_custom"))
    assert provenance["precision"] == "bf16"
    assert [p.name.split("-")[-2] for p in (tmp_path / "bf16" / "cache" / "embeddings").iterdir()] == ["bf16"]
    fp32, bf16 = (np.array(_genes(tmp_path / name).column("embedding").to_pylist()) for name in ("fp32", "bf16"))
    cosines = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert not np.array_equal(fp32, bf16) and cosines.min() >= 0.99
