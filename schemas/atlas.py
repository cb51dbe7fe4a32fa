"""Where each stage's files live inside an atlas directory.

Every path any stage reads or writes is built here, so the layout is declared once and deleting
the directory resets everything (no hidden global state).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from orthovec.schemas.errors import Invalid

DEFAULT_ATLAS = Path("orthovec-atlas")
ATLAS_ENV = "ORTHOVEC_ATLAS"

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Joins species in pair and group file names (`A__B.parquet`), so no species name may hold it.
PAIR_SEPARATOR = "__"


def check_name(kind: str, value: str) -> str:
    """Species and model names become directory and file names, so keep them path-safe."""
    if not NAME.fullmatch(value or ""):
        raise Invalid(
            f"is not a usable {kind} name: use letters, digits, '_', '-' or '.', starting with a "
            f"letter or digit (for example 'homo_sapiens').",
            param=kind,
            value=value,
        )
    if kind == "species" and PAIR_SEPARATOR in value:
        # `a__b` with `c` and `a` with `b__c` would both be written to `a__b__c.parquet`.
        raise Invalid(
            f"is not a usable species name: '{PAIR_SEPARATOR}' separates the two species in pair file names "
            "(alignments, mappings), so a name holding it could collide with a pair; use a single '_'.",
            param=kind,
            value=value,
        )
    return value


def resolve_atlas(atlas: str | os.PathLike[str] | None, environ: dict[str, str] | None = None) -> Path:
    """--atlas wins, then $ORTHOVEC_ATLAS, then ./orthovec-atlas."""
    env = os.environ if environ is None else environ
    if atlas:
        return Path(atlas)
    if env.get(ATLAS_ENV):
        return Path(env[ATLAS_ENV])
    return DEFAULT_ATLAS


@dataclass(frozen=True)
class Atlas:
    """Paths inside one atlas directory."""

    root: Path

    def species_dir(self, species: str) -> Path:
        return self.root / "species" / check_name("species", species)

    def proteins(self, species: str) -> Path:
        return self.species_dir(species) / "proteins.parquet"

    def protein_embeddings(self, species: str, model: str) -> Path:
        return self.species_dir(species) / "protein_embeddings" / f"{check_name('model', model)}.parquet"

    def genes(self, species: str, model: str) -> Path:
        return self.species_dir(species) / "genes" / f"{check_name('model', model)}.parquet"

    def search_database(self, species: str) -> Path:
        """The species' MMseqs2 search database, one subdirectory per proteome content hash
        (`lookup.homology.databases`): built once, reused by every pair and sequence query."""
        return self.species_dir(species) / "mmseqs"

    def index_report(self, species: str) -> Path:
        return self.species_dir(species) / "index_report.json"

    def read_index_report(self, species: str) -> dict[str, object]:
        """The species' last `index_report.json` ({} when there is none or it is unreadable)."""
        try:
            report = json.loads(self.index_report(species).read_text())
        except (OSError, ValueError):
            return {}
        return report if isinstance(report, dict) else {}

    def embedding_cache(self, cache_key: str) -> Path:
        """Chunks of embedded sequences, shared by all species indexed with the same model setup."""
        return self.root / "cache" / "embeddings" / cache_key

    def download_cache(self) -> Path:
        """Fetched proteomes, named by the SHA-256 of their content (`orthovec build`, `fetch-proteome`)."""
        return self.root / "cache" / "downloads"

    def source_record(self, species: str) -> Path:
        """Where a species' proteome came from: source, URL, date and checksum (written by the build)."""
        return self.species_dir(species) / "source.json"

    def build_state(self) -> Path:
        """One stamp per finished build step: the content hashes it ran on and the outputs it wrote."""
        return self.root / "build"

    def species_lock(self, species: str) -> Path:
        """Held by the one run that stages and commits this species (see `schemas.locks`)."""
        return self.root / ".locks" / f"index-{check_name('species', species)}.lock"

    def staging(self, species: str) -> Path:
        """A run's new files for a species, moved into place only once the whole run has succeeded."""
        return self.species_dir(species) / ".staging"

    def store_lock(self) -> Path:
        """Exclusive for a writer of the embedded store, shared for its readers (see `schemas.locks`)."""
        return self.root / "qdrant" / ".lock"

    def serving_record(self) -> Path:
        """Where a running `orthovec serve` says it answers, for readers beside it (`lookup.store.serving`)."""
        return self.root / "serving.json"

    def qdrant(self, model: str) -> Path:
        """One embedded Qdrant Edge shard per model (vector sizes differ between models)."""
        return self.root / "qdrant" / check_name("model", model)

    def mapping(self, model: str, species_a: str, species_b: str) -> Path:
        a, b = check_name("species", species_a), check_name("species", species_b)
        return self.root / "mappings" / check_name("model", model) / f"{a}__{b}.parquet"

    def alignment(self, species_a: str, species_b: str) -> Path:
        """MMseqs2 gene-pair evidence of two species (model-free: it depends on sequences only)."""
        return (
            self.root / "alignments" / f"{check_name('species', species_a)}__{check_name('species', species_b)}.parquet"
        )

    def multi_mapping(self, model: str, species: list[str]) -> Path:
        names = "__".join(check_name("species", s) for s in species)
        return self.root / "mappings" / check_name("model", model) / f"groups__{names}.parquet"

    def species_names(self) -> list[str]:
        base = self.root / "species"
        return (
            sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []
        )

    def models_for(self, species: str) -> list[str]:
        genes_dir = self.species_dir(species) / "genes"
        return sorted(p.stem for p in genes_dir.glob("*.parquet")) if genes_dir.is_dir() else []
