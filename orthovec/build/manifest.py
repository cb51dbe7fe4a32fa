"""The build manifest: species and their sources written down once, checked before any work starts.

A manifest is TOML: one `[atlas]` table (model, weights, mapping and alignment settings, optional
Qdrant URL) and one `[[species]]` table per species (name, source and per-species indexing
options). Every mistake is reported with the line of the offending key, because a 20-species
manifest is edited by hand and "invalid manifest" alone sends the user hunting.
"""

from __future__ import annotations

import difflib
import itertools
import re
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from orthovec.core.files import file_kind
from orthovec.embedding.architectures import CUSTOM_NAME, ESM2_ARCHITECTURES, LONG_SEQS, PRECISIONS, LongSeqs, Precision
from orthovec.indexer.settings import POOLINGS, Pooling
from orthovec.schemas.atlas import check_name
from orthovec.schemas.errors import Invalid, NotFound
from orthovec.schemas.parameters import check_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

if TYPE_CHECKING:  # the FASTA reader imports fair-esm; a manifest check should not
    from orthovec.indexer.proteome import Unresolved

SourceKind = Literal["path", "url", "uniprot", "ensembl"]

#: UniProt proteome ids are "UP" and nine digits (UP000005640 is the human reference proteome).
UNIPROT_PROTEOME = re.compile(r"^UP\d{9}$")
#: A file's SHA-256 as the manifest's `sha256` and `fetch-proteome`'s option give it.
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
#: Ensembl peptide FASTA by species and release: `ensembl:homo_sapiens@112`.
ENSEMBL_SOURCE = re.compile(r"^ensembl:([a-z][a-z0-9_]*)@(\d+)$")
#: [atlas] keys passed to the mapping as they are (`orthovec.lookup.homology.mapping.MappingParams` fields).
MAPPING_KEYS = ("k", "metric", "evidence", "margin", "min_score", "max_evalue", "csls_k")
SOURCE_FORMS = (
    "a FASTA path (relative to the manifest), an http(s) URL, a UniProt proteome id "
    "(UP + 9 digits, e.g. UP000005640) or ensembl:SPECIES@RELEASE (e.g. ensembl:mus_musculus@112)"
)


@dataclass(frozen=True)
class Source:
    """Where a proteome comes from; `value` is the path, URL, proteome id or `species@release`."""

    kind: SourceKind
    value: str

    def __str__(self) -> str:
        return f"ensembl:{self.value}" if self.kind == "ensembl" else self.value

    @property
    def remote(self) -> bool:
        return self.kind != "path"


@dataclass(frozen=True)
class SpeciesEntry:
    name: str
    source: Source
    taxid: int | None = None
    gene_map: Path | None = None
    pooling: Pooling | None = None  # None: the atlas default
    unresolved: Unresolved = "report"
    sha256: str | None = None  # pins the downloaded file's content
    embed: bool | None = None  # None: the atlas default


@dataclass(frozen=True)
class AtlasSettings:
    """Once for the whole atlas: how every species is embedded, mapped and aligned."""

    weights: Path | None = None
    model: str | None = None
    embed: bool = True  # False: every species without its own `embed` is indexed for alignment only
    layer: int | None = None
    pooling: Pooling = "mean"
    precision: Precision = "auto"
    long_seqs: LongSeqs = "window"
    device: str = "auto"
    toks_per_batch: int = 4096
    pairs: tuple[tuple[str, str], ...] | None = None  # None: every pair, in manifest order
    align: bool = True
    align_sensitivity: float | None = None  # None: `orthovec align`'s default
    align_threads: int | None = None  # None: as `orthovec align` decides
    #: MappingParams fields the manifest sets (k, metric, margin, ...); the rest keep `orthovec map`'s defaults.
    mapping: dict[str, Any] = field(default_factory=dict)
    qdrant_url: str | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    atlas: AtlasSettings
    species: tuple[SpeciesEntry, ...]

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.species]

    def embeds(self, species: str) -> bool:
        """Whether `species` is embedded (its own `embed`, else the atlas's)."""
        entry = next(entry for entry in self.species if entry.name == species)
        return self.atlas.embed if entry.embed is None else entry.embed

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.atlas.pairs) if self.atlas.pairs is not None else list(itertools.combinations(self.names, 2))


# key -> (python type(s), description shown in errors)
_ATLAS_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "weights": ((str,), "checkpoint path"),
    "model": ((str,), "ESM-2 model name"),
    "embed": ((bool,), "true, or false for alignment only (no embeddings)"),
    "layer": ((int,), "representation layer"),
    "pooling": ((str,), f"one of {', '.join(POOLINGS)}"),
    "precision": ((str,), f"one of {', '.join(PRECISIONS)}"),
    "long_seqs": ((str,), "window or truncate"),
    "device": ((str,), "auto, cpu or cuda"),
    "toks_per_batch": ((int,), "tokens per batch (>= 64)"),
    "pairs": ((list,), 'a list of [A, B] species pairs, e.g. [["human", "mouse"]]'),
    "align": ((bool,), "true or false"),
    "align_sensitivity": ((int, float), "MMseqs2 sensitivity (1-7.5)"),
    "align_threads": ((int,), "MMseqs2 threads per pair"),
    "k": ((int,), "hits per gene"),
    "metric": ((str,), "the name of a mapping metric"),
    "evidence": ((str,), "the name of a mapping evidence"),
    "margin": ((int, float), "homology-graph margin"),
    "min_score": ((int, float), "homology-graph minimum score"),
    "max_evalue": ((int, float), "one-to-one E-value ceiling"),
    "csls_k": ((int,), "neighbours for the CSLS metric"),
    "qdrant_url": ((str,), "Qdrant server URL to load into"),
}
_SPECIES_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "species name"),
    "source": ((str,), SOURCE_FORMS),
    "taxid": ((int,), "NCBI taxonomy id"),
    "gene_map": ((str,), "TSV protein_id<TAB>gene_id[<TAB>symbol] path"),
    "pooling": ((str,), f"one of {', '.join(POOLINGS)}"),
    "unresolved": ((str,), "report or self"),
    "sha256": ((str,), "64 hex digits of the expected file content"),
    "embed": ((bool,), "true, or false for alignment only (no embeddings)"),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "pooling": tuple(POOLINGS),
    "precision": tuple(PRECISIONS),
    "long_seqs": LONG_SEQS,
    "device": ("auto", "cpu", "cuda"),
    "unresolved": ("report", "self"),
}

#: Numeric [atlas] keys and the shared rule (`orthovec.schemas.parameters.RULES`) each is checked by,
#: so a manifest refuses exactly what the command line and HTTP refuse (NaN, out of range).
_NUMBER_RULES = {
    "layer": "layer",
    "toks_per_batch": "toks_per_batch",
    "align_sensitivity": "sensitivity",
    "align_threads": "threads",
    "k": "k",
    "margin": "margin",
    "min_score": "min_score",
    "max_evalue": "max_evalue",
    "csls_k": "csls_k",
}


def _check_number(rule: str, value: object, where: str, key: str) -> None:
    try:
        check_number(rule, value, param=key)
    except Invalid as err:
        raise Invalid(f"{where}: {err}") from None


_TABLE_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


def key_lines(text: str) -> dict[tuple[str, int, str], int]:
    """(table, entry index, key) -> 1-based line, from the text (tomllib keeps no positions).

    The table's own header line is stored under the key "" so an error about a missing key can
    point at the table it belongs to.
    """
    lines: dict[tuple[str, int, str], int] = {}
    table, counts = "", {"": 0}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE_HEADER.match(line)
        if header:
            table = header.group(2)
            counts[table] = counts.get(table, -1) + 1 if header.group(1) == "[[" else 0
            lines.setdefault((table, counts[table], ""), number)
            continue
        key = _KEY_LINE.match(line)
        if key:
            lines.setdefault((table, counts.get(table, 0), key.group(1).strip('"')), number)
    return lines


class _Where:
    """Error locations inside one manifest file."""

    def __init__(self, path: Path, lines: dict[tuple[str, int, str], int]) -> None:
        self.path, self.lines = path, lines

    def __call__(self, table: str, index: int, key: str = "") -> str:
        line = self.lines.get((table, index, key)) or self.lines.get((table, index, ""))
        label = "[atlas]" if table == "atlas" else f"[[species]] entry {index + 1}"
        return f"{self.path}:{line}: {label}" if line else f"{self.path}: {label}"


def load_manifest(path: Path) -> Manifest:
    """Read and check a manifest; paths in it are relative to the manifest's directory."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: manifest not found; write one as the README's 'Build an atlas of many species' shows.")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise Invalid(f"{path}: not valid TOML: {err}. Fix that line and run again.") from None
    lines = key_lines(text)
    where = _Where(path, lines)
    unknown = sorted(set(data) - {"atlas", "species"})
    if unknown:
        line = lines.get(("", 0, unknown[0])) or lines.get((unknown[0], 0, ""))
        raise Invalid(
            f"{path}:{line}: unknown top-level key '{unknown[0]}'{_did_you_mean(unknown[0], ['atlas', 'species'])}; "
            "a manifest holds one [atlas] table and [[species]] entries."
        )
    atlas_table = data.get("atlas")
    if not isinstance(atlas_table, dict):
        raise Invalid(f'{path}: missing [atlas] table; add one with `weights = "PATH.pt"` or `model = NAME`.')
    species_tables = data.get("species")
    if not isinstance(species_tables, list) or not species_tables:
        raise Invalid(f"{path}: no [[species]] entries; add one per species with `name` and `source`.")
    species = tuple(_species(path.parent, table, index, where) for index, table in enumerate(species_tables))
    names = [entry.name for entry in species]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise Invalid(f"{where('species', index, 'name')}: species '{name}' is listed twice; names must be unique.")
    settings = _atlas(path.parent, atlas_table, where, names, any_embedded=_any_embedded(atlas_table, species))
    return Manifest(path=path, atlas=settings, species=species)


def _any_embedded(atlas_table: dict[str, Any], species: tuple[SpeciesEntry, ...]) -> bool:
    default = atlas_table.get("embed", True)
    return any(default if entry.embed is None else entry.embed for entry in species)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(
    table: dict[str, Any], allowed: dict[str, tuple[tuple[type, ...], str]], name: str, index: int, where: _Where
) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise Invalid(
                f"{where(name, index, key)}: unknown key '{key}'{_did_you_mean(key, list(allowed))}; "
                f"allowed keys: {', '.join(allowed)}."
            )
        types, description = allowed[key]
        # bool is an int in Python; a `layer = true` typo must not pass as layer 1
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise Invalid(f"{where(name, index, key)}: '{key}' = {value!r} is not valid; expected {description}.")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise Invalid(
                f"{where(name, index, key)}: '{key}' = {value!r} is not valid; expected one of "
                f"{', '.join(_CHOICES[key])}."
            )


def _species(base: Path, table: object, index: int, where: _Where) -> SpeciesEntry:
    if not isinstance(table, dict):
        raise Invalid(f"{where('species', index)}: each species must be a table with `name` and `source`.")
    _check_keys(table, _SPECIES_KEYS, "species", index, where)
    for required in ("name", "source"):
        if required not in table:
            raise Invalid(f"{where('species', index)}: missing '{required}' ({_SPECIES_KEYS[required][1]}).")
    name = table["name"]
    try:
        check_name("species", name)
    except Invalid as err:
        raise Invalid(f"{where('species', index, 'name')}: {err}") from None
    source = parse_source(table["source"], base, where("species", index, "source"))
    gene_map = _existing_file(base, table.get("gene_map"), where("species", index, "gene_map"), "gene map")
    sha256 = table.get("sha256")
    if sha256 is not None and not SHA256.fullmatch(sha256):
        raise Invalid(f"{where('species', index, 'sha256')}: 'sha256' must be 64 hex digits, got {sha256!r}.")
    taxid = table.get("taxid")
    if taxid is not None:
        _check_number("taxid", taxid, where("species", index, "taxid"), "taxid")
    return SpeciesEntry(
        name=name,
        source=source,
        taxid=taxid,
        gene_map=gene_map,
        pooling=table.get("pooling"),
        unresolved=table.get("unresolved", "report"),
        sha256=sha256.lower() if sha256 else None,
        embed=table.get("embed"),
    )


def parse_source(value: str, base: Path, where: str) -> Source:
    """Classify a source string; a path must exist now (a typo found after hours of indexing is costly)."""
    if "://" in value:
        if not value.startswith(("http://", "https://")):
            raise Invalid(f"{where}: source {value!r} uses an unsupported scheme; use http(s) or a local path.")
        parts = urllib.parse.urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise Invalid(  # the URL itself is not repeated: it holds the password
                f"{where}: the source URL carries a user name or password; orthovec sends no credentials (they "
                "would end up in logs and provenance records). Download the file yourself and give its path."
            )
        return Source("url", value)
    if value.upper().startswith("UP") and value[2:].isdigit():
        if not UNIPROT_PROTEOME.fullmatch(value):
            raise Invalid(
                f"{where}: {value!r} is not a UniProt proteome id: those are UP followed by 9 digits "
                "(for example UP000005640, the human reference proteome)."
            )
        return Source("uniprot", value)
    if value.startswith("ensembl:"):
        match = ENSEMBL_SOURCE.fullmatch(value)
        if not match:
            raise Invalid(
                f"{where}: {value!r} is not an Ensembl source; write ensembl:SPECIES@RELEASE with the species as "
                "in Ensembl's FTP folders (for example ensembl:mus_musculus@112)."
            )
        return Source("ensembl", f"{match.group(1)}@{match.group(2)}")
    path = _existing_file(base, value, where, "source")
    if path is None:  # unreachable for a str value; keeps the type honest
        raise Invalid(f"{where}: empty source; expected {SOURCE_FORMS}.")
    return Source("path", str(path))


def _existing_file(base: Path, value: str | None, where: str, what: str) -> Path | None:
    if value is None:
        return None
    path = (base / value).expanduser().absolute()
    if path.exists() and not path.is_file():
        raise Invalid(f"{where}: {what} {value!r} is {file_kind(path)}; give a regular file (save a stream to one).")
    if not path.is_file():
        hint = f"; a source may also be {SOURCE_FORMS}" if what == "source" else ""
        raise NotFound(f"{where}: {what} file {value!r} not found (looked at {path}){hint}.")
    return path


def _atlas(base: Path, table: dict[str, Any], where: _Where, names: list[str], *, any_embedded: bool) -> AtlasSettings:
    _check_keys(table, _ATLAS_KEYS, "atlas", 0, where)
    weights = _existing_file(base, table.get("weights"), where("atlas", 0, "weights"), "weights")
    model = table.get("model")
    if weights is None and model is None and any_embedded:
        raise Invalid(
            f'{where("atlas", 0)}: give `weights = "PATH.pt"` (a fair-esm checkpoint) or `model = NAME`, or '
            "`embed = false` to index every species for alignment only."
        )
    if model is not None and model not in ESM2_ARCHITECTURES and not CUSTOM_NAME.fullmatch(model):
        raise Invalid(
            f"{where('atlas', 0, 'model')}: unknown model {model!r}{_did_you_mean(model, list(ESM2_ARCHITECTURES))}; "
            f"choose one of {', '.join(ESM2_ARCHITECTURES)}."
        )
    for key, rule in _NUMBER_RULES.items():
        if key in table:
            _check_number(rule, table[key], where("atlas", 0, key), key)
    _check_mapping_choices(table, where)
    pairs = _pairs(table.get("pairs"), where("atlas", 0, "pairs"), names)
    mapping = {key: value for key, value in table.items() if key in MAPPING_KEYS}
    settings = {key: value for key, value in table.items() if key not in ("weights", "pairs", *MAPPING_KEYS)}
    return AtlasSettings(weights=weights, pairs=pairs, mapping=mapping, **settings)


def _check_mapping_choices(table: dict[str, Any], where: _Where) -> None:
    """Metric and evidence choices come from the mapping code itself, so the two cannot drift."""
    from orthovec.lookup.homology.mapping import Evidence
    from orthovec.lookup.homology.similarity import Metric

    for key, kind in (("metric", Metric), ("evidence", Evidence)):
        choices = get_args(kind)
        if key in table and table[key] not in choices:
            expected = ", ".join(choices)
            raise Invalid(
                f"{where('atlas', 0, key)}: '{key}' = {table[key]!r} is not valid; expected one of {expected}."
            )


def _pairs(value: list[Any] | None, where: str, names: list[str]) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    pairs: list[tuple[str, str]] = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(name, str) for name in pair)):
            raise Invalid(f"{where}: each pair is a list of two species names, e.g. ['human', 'mouse']; got {pair!r}.")
        a, b = pair
        for name in (a, b):
            if name not in names:
                raise Invalid(
                    f"{where}: pair {pair!r} names '{name}', which no [[species]] entry defines "
                    f"({', '.join(names)}){_did_you_mean(name, names)}."
                )
        if a == b or (a, b) in pairs or (b, a) in pairs:
            raise Invalid(f"{where}: pair {pair!r} is a repeat or maps a species to itself.")
        pairs.append((a, b))
    return tuple(pairs)
