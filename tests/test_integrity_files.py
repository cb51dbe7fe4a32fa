"""Files read and written by orthovec: schema checks that leave no hole, writes that leave no debris.

Issue 11, items 6, 16 (writers) and 19: each test fails on the code before the fix.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orthovec.indexer.proteome import read_proteome
from orthovec.schemas.errors import Invalid, Unavailable, UserError
from orthovec.schemas.tables import (
    GENES,
    PROVENANCE_KEY,
    SCHEMA_KEY,
    genes_table,
    read_provenance,
    read_table,
    write_table,
)


def _genes(n: int = 3) -> pa.Table:
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return genes_table("human", [f"G{i}" for i in range(n)], vectors)


def _write_raw(path: Path, table: pa.Table, tag: bytes | None = b"genes/1") -> Path:
    metadata = {SCHEMA_KEY: tag, PROVENANCE_KEY: b"{}"} if tag is not None else {}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


def test_a_null_in_a_required_column_is_refused_naming_the_column(tmp_path: Path) -> None:
    table = _genes()
    broken = table.set_column(1, "gene_id", pa.array(["G0", None, "G2"], pa.string()))
    path = _write_raw(tmp_path / "genes.parquet", broken)
    with pytest.raises(Invalid, match=r"column 'gene_id' has 1 empty \(null\) values"):
        read_table(path, GENES)
    with pytest.raises(Invalid, match="gene_id"):
        write_table(broken, tmp_path / "out.parquet", GENES, {})


def test_a_column_selection_is_validated_like_a_full_read(tmp_path: Path) -> None:
    table = _genes()
    wrong_type = table.set_column(1, "gene_id", pa.array([1, 2, 3], pa.int64()))
    path = _write_raw(tmp_path / "genes.parquet", wrong_type)
    with pytest.raises(Invalid, match="column 'gene_id' should be string"):
        read_table(path, GENES, columns=["gene_id"])
    good = _write_raw(tmp_path / "good.parquet", table)
    assert read_table(good, GENES, columns=["gene_id"]).column("gene_id").to_pylist() == ["G0", "G1", "G2"]


@pytest.mark.parametrize("tag", [b"genes", b"genes/x", b"/1", b"\xff\xfe"])
def test_a_malformed_schema_tag_is_a_user_error_not_an_index_error(tmp_path: Path, tag: bytes) -> None:
    path = _write_raw(tmp_path / "genes.parquet", _genes(), tag)
    with pytest.raises(Invalid, match=r"schema tag .* is malformed"):
        read_table(path, GENES)


def test_corrupt_and_foreign_files_are_user_errors(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(Invalid, match="not a readable Parquet file"):
        read_table(corrupt, GENES)
    with pytest.raises(Invalid, match="unreadable Parquet"):
        read_provenance(corrupt)
    foreign = _write_raw(tmp_path / "foreign.parquet", pa.table({"x": [1]}), tag=b"mapping/1")
    with pytest.raises(Invalid, match="holds a 'mapping/1' table"):
        read_table(foreign, GENES)


def test_a_failed_write_leaves_neither_a_temporary_nor_a_changed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_table(_genes(3), tmp_path / "genes.parquet", GENES, {"run": 1})

    def full_disk(table: pa.Table, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(Unavailable, match="the disk is full") as error:
        write_table(_genes(5), target, GENES, {"run": 2})
    assert "Traceback" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genes.parquet"]
    monkeypatch.undo()
    assert read_table(target, GENES).num_rows == 3 and read_provenance(target) == {"run": 1}


def test_temporaries_of_killed_writers_are_swept_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "genes.parquet"
    dead = tmp_path / ".genes.parquet.999999999.tmp"  # no such PID
    alive = tmp_path / f".genes.parquet.{os.getppid()}.tmp"  # a live process may still be writing it
    dead.write_bytes(b"half")
    alive.write_bytes(b"in progress")
    write_table(_genes(), target, GENES, {})
    assert not dead.exists() and alive.exists()


def test_a_fifo_is_named_as_a_fifo_not_a_missing_file(tmp_path: Path) -> None:
    fifo = tmp_path / "proteome.fa"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match=r"named pipe \(FIFO\).*save it to a file first"):
        read_proteome(fifo, "x")


def test_records_without_an_id_are_counted_not_made_gene_blank(tmp_path: Path) -> None:
    path = tmp_path / "noid.fa"
    path.write_text(">\nMKV\n> \nMKL\n>sp|P1|A OX=1 GN=A\nMKVL\n")
    proteins, report = read_proteome(path, "x", unresolved="self")
    assert proteins.column("protein_id").to_pylist() == ["P1"] and "" not in proteins.column("gene_id").to_pylist()
    assert report.skipped == {"no_protein_id": 2}


def test_non_utf8_bytes_never_reach_a_gene_id(tmp_path: Path) -> None:
    path = tmp_path / "latin1.fa"
    path.write_bytes(b">sp|P1|A OX=1 GN=caf\xe9\nMKV\n>sp|P2|B OX=1 GN=B\nMKL\n")
    proteins, report = read_proteome(path, "x")
    assert proteins.column("gene_id").to_pylist() == ["B"]
    assert report.skipped == {"non_utf8_id": 1} and "P1" in report.examples["non_utf8_id"][0]


def test_a_taxonomy_id_no_rule_allows_is_noted_and_the_proteome_kept(tmp_path: Path) -> None:
    path = tmp_path / "huge_ox.fa"
    path.write_text(">sp|P1|A OX=99999999999999999999 GN=A\nMKV\n>sp|P2|B OX=0 GN=B\nMKL\n>sp|P3|C OX=9606 GN=C\nMKI\n")
    proteins, report = read_proteome(path, "x")
    assert proteins.column("taxid").to_pylist() == [None, None, 9606]  # every protein kept, no OverflowError
    assert report.notes == {"invalid_taxid": 2} and "OX=99999999999999999999" in report.examples["invalid_taxid"][0]


def test_a_nul_byte_in_a_protein_id_is_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "nul.fa"
    path.write_bytes(b">sp|P1\x00X|A OX=1 GN=A\nMKV\n>sp|P2|B OX=1 GN=B\x00\nMKL\n>sp|P3|C OX=1 GN=C\nMKI\n")
    proteins, report = read_proteome(path, "x")
    assert proteins.column("protein_id").to_pylist() == ["P3"]
    assert report.skipped == {"nul_in_id": 2} and report.n_records == 3


def test_a_homology_import_from_a_species_to_itself_is_refused(tmp_path: Path) -> None:
    from orthovec.lookup.homology.imported import import_homology

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\tb\nTP53\tTP53\n")
    with pytest.raises(UserError, match="both 'human'"):
        import_homology(pairs, "human", "human", "pairs")
