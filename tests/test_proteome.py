"""Reading proteomes: every header style resolves to its gene; nothing is dropped unreported."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from orthovec.indexer.proteome import parse_header, read_proteome
from orthovec.schemas.errors import UserError
from tests.conftest import shared_file

ENSEMBL = """>ENSP00000269305.4 pep chromosome:GRCh38:17:7661779:7687538:-1 gene:ENSG00000141510.18 \
transcript:ENST00000269305.9 gene_biotype:protein_coding transcript_biotype:protein_coding gene_symbol:TP53 \
description:tumor protein p53 [Source:HGNC Symbol;Acc:HGNC:11998] Ensembl_canonical
MEEPQSDPSVEPPLSQETFSDLWKLL*
>ENSP00000352610.5 pep chromosome:GRCh38:17:7661779:7687538:-1 gene:ENSG00000141510.18 \
transcript:ENST00000359597.8 gene_biotype:protein_coding transcript_biotype:protein_coding gene_symbol:TP53
MEEPQSDPSVEPPLSQETF
>ENSP00000000233.5 pep chromosome:GRCh38:7:127588386:127591700:1 gene:ENSG00000004059.11 \
transcript:ENST00000000233.10 gene_symbol:ARF5 Ensembl_canonical
MGLTVSALFSRIFGKKQMRILMVGLDAAGKTTILYKL
"""

NCBI = """>lcl|NC_000017.11_prot_NP_000537.3_1 [gene=TP53] [db_xref=CCDS:CCDS11118.1,GeneID:7157] \
[protein=cellular tumor antigen p53 isoform a] [protein_id=NP_000537.3] [location=complement(1..10)]
MEEPQSDPSV
>lcl|NC_000017.11_prot_NP_001119584.1_2 [gene=TP53] [db_xref=GeneID:7157] [protein_id=NP_001119584.1]
MEEPQSDPSVEPP
"""


def _write(tmp_path: Path, name: str, text: str, gzipped: bool = False) -> Path:
    path = tmp_path / name
    if gzipped:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def test_every_human_swissprot_record_resolves_to_its_entrez_gene() -> None:
    proteins, report = read_proteome(shared_file("proteomes/human_sprot2014.fasta.gz"), "human")
    assert report.n_records == proteins.num_rows == 17_459
    assert sum(report.skipped.values()) == 0
    assert report.gene_id_source == {"EntrezGene": 17_459}
    tp53 = proteins.filter(proteins.column("gene_symbol").to_numpy(zero_copy_only=False) == "TP53").to_pylist()
    assert [(r["protein_id"], r["gene_id"], r["taxid"], r["is_canonical"]) for r in tp53] == [
        ("P04637", "7157", 9606, True)
    ]
    assert report.n_genes == len(set(proteins.column("gene_id").to_pylist()))


def test_frog_records_take_their_ncbi_gene_ids() -> None:
    proteins, report = read_proteome(shared_file("proteomes/xenopus_tropicalis_sprot2014.fasta.gz"), "frog")
    assert report.n_proteins == 1_375 and report.gene_id_source == {"GeneID": 1_375}
    first = proteins.slice(0, 1).to_pylist()[0]
    assert (first["protein_id"], first["gene_id"], first["gene_symbol"], first["taxid"]) == (
        "A0JM08",
        "780180",
        "cep170b",
        8364,
    )


def test_uniprot_isoforms_share_a_gene_and_only_the_canonical_is_flagged() -> None:
    canonical = parse_header("sp|P04637|P53_HUMAN Cellular tumor antigen p53 OS=Homo sapiens OX=9606 GN=TP53 PE=1 SV=4")
    isoform = parse_header(
        "sp|P04637-2|P53_HUMAN Isoform 2 of Cellular tumor antigen p53 OS=Homo sapiens OX=9606 GN=TP53"
    )
    assert (canonical.gene_id, canonical.is_canonical, canonical.taxid) == ("TP53", True, 9606)
    assert (isoform.gene_id, isoform.protein_id, isoform.is_canonical) == ("TP53", "P04637-2", False)


def test_ensembl_pep_headers_give_versionless_gene_ids_and_canonical_flags(tmp_path: Path) -> None:
    proteins, report = read_proteome(_write(tmp_path, "pep.fa.gz", ENSEMBL, gzipped=True), "human")
    rows = proteins.to_pylist()
    assert [r["gene_id"] for r in rows] == ["ENSG00000141510", "ENSG00000141510", "ENSG00000004059"]
    assert [r["is_canonical"] for r in rows] == [True, False, True]
    assert rows[0]["transcript_id"] == "ENST00000269305.9" and rows[0]["gene_symbol"] == "TP53"
    assert rows[0]["sequence"].endswith("KLL")  # trailing stop trimmed
    assert report.n_genes == 2 and report.n_isoform_genes == 1


def test_ncbi_cds_headers_give_protein_ids_and_gene_ids(tmp_path: Path) -> None:
    proteins, _ = read_proteome(_write(tmp_path, "cds.faa", NCBI), "human")
    rows = proteins.to_pylist()
    assert [(r["protein_id"], r["gene_id"], r["gene_symbol"]) for r in rows] == [
        ("NP_000537.3", "7157", "TP53"),
        ("NP_001119584.1", "7157", "TP53"),
    ]
    assert rows[0]["is_canonical"] is None


def test_a_gene_map_resolves_headers_that_carry_no_gene(tmp_path: Path) -> None:
    fasta = _write(tmp_path, "refseq.faa", ">NP_000537.3 cellular tumor antigen p53\nMEEPQ\n>XP_1.1 other\nMKV\n")
    gene_map = _write(tmp_path, "map.tsv", "protein_id\tgene_id\tsymbol\n# comment\nNP_000537\t7157\tTP53\n")
    proteins, report = read_proteome(fasta, "human", gene_map=gene_map)
    assert proteins.to_pylist()[0]["gene_id"] == "7157"
    assert report.skipped == {"no_gene": 1} and report.examples["no_gene"] == ["XP_1.1 (record 2)"]
    kept, report = read_proteome(fasta, "human", gene_map=gene_map, unresolved="self")
    assert kept.column("gene_id").to_pylist() == ["7157", "XP_1.1"]
    assert report.gene_id_source["own_gene"] == 1


def test_bad_records_are_skipped_and_counted_with_examples(tmp_path: Path) -> None:
    text = (
        ">sp|P1|A OX=1 GN=A\nMKV*\n"
        ">sp|P2|B OX=1 GN=B\nMK*VL\n"  # internal stop
        ">sp|P3|C OX=1 GN=C\n*\n"  # empty after trimming
        ">sp|P1|A OX=1 GN=A\nMKV\n"  # duplicate ID, same sequence
        ">sp|P4|D OX=1 GN=D\nMK-V1\n"  # gap and digit
        ">sp|P5|E OX=1\nMKVL\n"  # no GN=
    )
    proteins, report = read_proteome(_write(tmp_path, "bad.fa", text), "x")
    assert proteins.column("protein_id").to_pylist() == ["P1"]
    assert report.skipped == {"invalid_residues": 2, "empty_sequence": 1, "duplicate_id": 1, "no_gene": 1}
    assert report.n_records == report.n_proteins + sum(report.skipped.values())
    assert "'*'" in report.examples["invalid_residues"][0] and "'-1'" in report.examples["invalid_residues"][1]
    assert "same sequence" in report.examples["duplicate_id"][0]
    assert any("duplicate_id" in line for line in report.summary_lines())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"gene,protein\nTP53,P04637\n", "not a FASTA file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a FASTA file"),
        (gzip.compress(b">sp|P1|A GN=A\nMKV\n", mtime=0)[:20], "truncated"),
    ],
)
def test_whole_file_problems_are_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.fa"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        read_proteome(path, "x")
    assert str(path) in str(error.value)


def test_a_file_where_nothing_can_be_kept_says_why(tmp_path: Path) -> None:
    path = _write(tmp_path, "nogenes.fa", ">NP_1.1 something\nMKV\n>NP_2.1 else\nMKL\n")
    with pytest.raises(UserError, match=r"none of the 2 records.*2 no_gene.*gene map"):
        read_proteome(path, "x")


def test_a_malformed_gene_map_names_its_line(tmp_path: Path) -> None:
    fasta = _write(tmp_path, "a.fa", ">P1 x\nMKV\n")
    gene_map = _write(tmp_path, "map.tsv", "P1\tG1\nP2 G2\n")
    with pytest.raises(UserError, match=r"map.tsv, line 2"):
        read_proteome(fasta, "x", gene_map=gene_map)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found"):
        read_proteome(tmp_path / "nope.fa", "x")
