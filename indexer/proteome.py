"""Proteome FASTA → one row per protein with its gene, and a report of everything not kept.

Headers from UniProt, Ensembl pep and NCBI translated-CDS files carry the gene; anything else
needs a protein→gene TSV. Nothing is dropped silently: every record is either a row of the
proteins table or counted, with examples, under a reason in the `ReadReport`.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from Bio.SeqIO.FastaIO import SimpleFastaParser

from orthovec.core.files import open_text
from orthovec.embedding.sequences import invalid_residues, normalise
from orthovec.indexer.settings import Unresolved
from orthovec.schemas.errors import Invalid
from orthovec.schemas.parameters import check_number
from orthovec.schemas.tables import PROTEINS

#: What `open_text` puts where a file has bytes that are not UTF-8.
UNDECODABLE = "\ufffd"
EXAMPLES_PER_REASON = 5


def seq_hash(sequence: str) -> str:
    """Content key of a cleaned sequence: identical sequences are embedded once."""
    return hashlib.sha256(sequence.encode()).hexdigest()[:32]


@dataclass
class HeaderGene:
    """What one header says about its protein."""

    protein_id: str
    gene_id: str | None = None
    gene_symbol: str | None = None
    taxid: int | None = None
    taxonomy: str | None = None  # the header's own taxonomy text (OX=...), as written
    is_canonical: bool | None = None
    transcript_id: str | None = None
    description: str | None = None
    gene_id_source: str | None = None
    header_format: str = "other"


_UNIPROT = re.compile(r"^(sp|tr)\|([^|]+)\|(\S+)\s*(.*)$")
_UNIPROT_FIELD = re.compile(r"\b(OS|OX|GN|PE|SV|EntrezGene|altGN|XB)=(.*?)(?=\s+\w+=|\s+GeneID:|$)")
_GENEID = re.compile(r"\bGeneID:(\d+)")
_ENSEMBL_KEY = re.compile(r"(\w+):(\S+)")
_NCBI_FIELD = re.compile(r"\[(\w+)=([^\]]*)\]")


def parse_header(header: str) -> HeaderGene:
    """Gene information from a UniProt, Ensembl pep or NCBI translated-CDS header."""
    uniprot = _UNIPROT.match(header)
    if uniprot:
        return _uniprot(uniprot)
    if "[protein_id=" in header or "[gene=" in header:
        return _ncbi(header)
    first, _, rest = header.partition(" ")
    if " pep " in f" {rest} " or "gene:" in rest:
        return _ensembl(first, rest)
    return HeaderGene(protein_id=first, description=rest or None)


def _uniprot(match: re.Match[str]) -> HeaderGene:
    accession, rest = match.group(2), match.group(4)
    fields = {key: value.strip() for key, value in _UNIPROT_FIELD.findall(rest)}
    description = rest.split(" OS=")[0].strip() or None
    geneid = _GENEID.search(rest)
    symbol = fields.get("GN")
    if fields.get("EntrezGene"):
        gene_id, source = fields["EntrezGene"], "EntrezGene"
    elif geneid:
        gene_id, source = geneid.group(1), "GeneID"
    elif symbol:
        gene_id, source = symbol, "GN"
    else:
        gene_id, source = None, None
    taxid = int(fields["OX"]) if fields.get("OX", "").isdigit() else None
    return HeaderGene(
        taxonomy=fields.get("OX"),
        protein_id=accession,
        gene_id=gene_id,
        gene_symbol=symbol,
        taxid=taxid,
        is_canonical="-" not in accession,
        description=description,
        gene_id_source=source,
        header_format="uniprot",
    )


def _ensembl(protein_id: str, rest: str) -> HeaderGene:
    fields = dict(_ENSEMBL_KEY.findall(rest))
    gene = fields.get("gene")
    description = rest.split("description:", 1)[1].strip() if "description:" in rest else None
    return HeaderGene(
        protein_id=protein_id,
        gene_id=gene.split(".")[0] if gene else None,
        gene_symbol=fields.get("gene_symbol"),
        is_canonical=True if "Ensembl_canonical" in rest.split() else None,
        transcript_id=fields.get("transcript"),
        description=description,
        gene_id_source="ensembl" if gene else None,
        header_format="ensembl",
    )


def _ncbi(header: str) -> HeaderGene:
    fields = dict(_NCBI_FIELD.findall(header))
    protein_id = fields.get("protein_id") or header.split()[0]
    symbol = fields.get("gene")
    geneid = _GENEID.search(fields.get("db_xref", ""))
    gene_id: str | None
    source: str | None
    if geneid:
        gene_id, source = geneid.group(1), "GeneID"
    else:
        gene_id, source = symbol, "gene" if symbol else None
    return HeaderGene(
        protein_id=protein_id,
        gene_id=gene_id,
        gene_symbol=symbol,
        description=fields.get("protein"),
        gene_id_source=source,
        header_format="ncbi",
    )


def read_gene_map(path: Path) -> dict[str, tuple[str, str | None]]:
    """protein_id → (gene_id, symbol) from a TSV; accepts an optional header line and # comments."""
    mapping: dict[str, tuple[str, str | None]] = {}
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n\r")
            if not line.strip() or line.startswith("#"):
                continue
            columns = line.split("\t")
            if number == 1 and columns[0].lower() in ("protein_id", "protein", "protein id"):
                continue
            if len(columns) < 2 or not columns[0].strip() or not columns[1].strip():
                raise Invalid(
                    f"{path}, line {number}: expected protein_id<TAB>gene_id[<TAB>symbol], got {line[:80]!r}."
                )
            symbol = columns[2].strip() if len(columns) > 2 and columns[2].strip() else None
            mapping[columns[0].strip()] = (columns[1].strip(), symbol)
    if not mapping:
        raise Invalid(f"{path}: the gene map has no rows (expected protein_id<TAB>gene_id[<TAB>symbol]).")
    return mapping


@dataclass
class ReadReport:
    """Every record accounted for: kept as a protein, or counted under a skip reason."""

    path: str
    n_records: int = 0
    n_proteins: int = 0
    n_genes: int = 0
    n_isoform_genes: int = 0
    header_format: Counter[str] = field(default_factory=Counter)
    gene_id_source: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: Counter[str] = field(default_factory=Counter)

    def note(self, reason: str, example: str, skipped: bool = True) -> None:
        (self.skipped if skipped else self.notes)[reason] += 1
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

    def summary_lines(self) -> list[str]:
        lines = [
            f"{self.path}: {self.n_records:,} records → {self.n_proteins:,} proteins kept, "
            f"{self.n_genes:,} genes ({self.n_isoform_genes:,} with several isoforms)",
            "gene IDs from: " + ", ".join(f"{k} {v:,}" for k, v in self.gene_id_source.most_common()),
        ]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped {count:,} ({reason}), e.g. {'; '.join(self.examples[reason])}")
        for reason, count in sorted(self.notes.items()):
            lines.append(f"note: {count:,} {reason}, e.g. {'; '.join(self.examples[reason])}")
        return lines

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "n_records": self.n_records,
            "n_proteins": self.n_proteins,
            "n_genes": self.n_genes,
            "n_isoform_genes": self.n_isoform_genes,
            "header_format": dict(self.header_format),
            "gene_id_source": dict(self.gene_id_source),
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }


def _records(path: Path) -> Iterator[tuple[int, str, str]]:
    """(record number, header, raw sequence); a file that is not FASTA fails on its first line."""
    try:
        with open_text(path) as handle:
            first = ""
            for line in handle:
                if line.strip():
                    first = line
                    break
            if not first:
                raise Invalid(f"{path}: the file is empty (no FASTA records).")
            if not first.startswith(">"):
                looks = "binary data" if "\ufffd" in first or "\x00" in first else f"{first.strip()[:60]!r}"
                raise Invalid(
                    f"{path}: not a FASTA file: the first line should start with '>' but is {looks}. "
                    "Pass a protein FASTA (plain or .gz)."
                )
            handle.seek(0)
            for number, (header, sequence) in enumerate(SimpleFastaParser(handle), start=1):
                yield number, header, sequence
    except (EOFError, OSError, zlib.error) as err:
        raise Invalid(f"{path}: could not be read to the end ({err}); is the gzip file truncated?") from err


def _valid_taxid(taxid: int) -> bool:
    try:
        check_number("taxid", taxid)
    except Invalid:
        return False
    return True


def read_proteome(
    path: Path,
    species: str,
    taxid: int | None = None,
    gene_map: Path | None = None,
    unresolved: Unresolved = "report",
) -> tuple[pa.Table, ReadReport]:
    """Proteins of one FASTA file as a PROTEINS table (file order) and the report of what was skipped."""
    path = Path(path)
    overrides = read_gene_map(gene_map) if gene_map else {}
    report = ReadReport(path=str(path))
    rows: dict[str, list[object]] = defaultdict(list)
    seen: dict[str, str] = {}
    canonical_tagged = False
    for number, header, raw in _records(path):
        report.n_records += 1
        parsed = parse_header(header)
        report.header_format[parsed.header_format] += 1
        where = f"{parsed.protein_id} (record {number})"
        if not parsed.protein_id:
            # An ID-less record cannot be named in any table or query; keeping it would make gene ''.
            report.note("no_protein_id", f"record {number} ('>{header[:40]}')")
            continue
        sequence = normalise(raw)
        if not sequence:
            report.note("empty_sequence", where)
            continue
        bad = invalid_residues(sequence)
        if bad:
            report.note("invalid_residues", f"{where}: {bad!r}")
            continue
        if parsed.protein_id in seen:
            same = seen[parsed.protein_id] == sequence
            report.note("duplicate_id", f"{where} ({'same' if same else 'different'} sequence as the first)")
            continue
        override = overrides.get(parsed.protein_id) or overrides.get(parsed.protein_id.split(".")[0])
        if override:
            parsed.gene_id, parsed.gene_symbol = override[0], override[1] or parsed.gene_symbol
            parsed.gene_id_source = "gene_map"
        names = (parsed.protein_id, parsed.gene_id, parsed.gene_symbol)
        if any(UNDECODABLE in (name or "") for name in names):
            # Bytes that are not UTF-8 were replaced while reading; an ID holding U+FFFD matches nothing.
            report.note("non_utf8_id", f"record {number}: {header[:60]!r}")
            continue
        if any("\x00" in (name or "") for name in names):
            # A NUL ends the name in C code (MMseqs2, Qdrant's payload index): two names would collide.
            report.note("nul_in_id", f"record {number}: {header[:60]!r}")
            continue
        if parsed.taxid is not None and not _valid_taxid(parsed.taxid):
            # One impossible OX= must not abort a proteome: the protein keeps its gene, without a taxid.
            report.note("invalid_taxid", f"{where}: OX={parsed.taxonomy}", skipped=False)
            parsed.taxid = None
        if parsed.gene_id is None:
            if unresolved == "report":
                report.note("no_gene", where)
                continue
            parsed.gene_id, parsed.gene_id_source = parsed.protein_id, "own_gene"
        if taxid is not None and parsed.taxid is not None and parsed.taxid != taxid:
            report.note("taxid_differs_from_--taxid", f"{where}: OX={parsed.taxid}", skipped=False)
        canonical_tagged |= parsed.is_canonical is True and parsed.header_format == "ensembl"
        seen[parsed.protein_id] = sequence
        report.gene_id_source[parsed.gene_id_source or "?"] += 1
        for name, value in (
            ("species", species),
            ("protein_id", parsed.protein_id),
            ("gene_id", parsed.gene_id),
            ("gene_symbol", parsed.gene_symbol),
            ("taxid", taxid if taxid is not None else parsed.taxid),
            ("seq_hash", seq_hash(sequence)),
            ("length", len(sequence)),
            ("is_canonical", parsed.is_canonical),
            ("sequence", sequence),
            ("description", parsed.description),
            ("transcript_id", parsed.transcript_id),
            ("header_format", parsed.header_format),
        ):
            rows[name].append(value)

    if report.n_records == 0:
        raise Invalid(f"{path}: no FASTA records found.")
    if not rows:
        reasons = ", ".join(f"{v} {k}" for k, v in report.skipped.items())
        hint = " A gene map (TSV of protein_id and gene_id) assigns genes." if report.skipped.get("no_gene") else ""
        raise Invalid(f"{path}: none of the {report.n_records} records could be kept ({reasons}).{hint}")
    if canonical_tagged:
        # In an Ensembl file that tags canonical transcripts, an untagged one is not canonical.
        rows["is_canonical"] = [
            flag if fmt != "ensembl" else bool(flag)
            for flag, fmt in zip(rows["is_canonical"], rows["header_format"], strict=True)
        ]
    del rows["header_format"]
    table = pa.table(dict(rows), schema=PROTEINS.schema())
    genes = Counter(table.column("gene_id").to_pylist())
    report.n_proteins, report.n_genes = table.num_rows, len(genes)
    report.n_isoform_genes = sum(count > 1 for count in genes.values())
    return PROTEINS.validate(table, str(path)), report
