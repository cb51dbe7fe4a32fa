"""What each species of an atlas really has: proteins, gene vectors per model, store points, search database.

Read from the files and the store, never from what a run meant to do, so a killed run, a copied
atlas or a store that lost its points shows as it is. The tables come from the indexer's files,
the store counts from the lookup stage's store: this module sits above both (the top floor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Unavailable, UserError
from orthovec.schemas.tables import read_provenance

ALIGNMENT_ONLY = "alignment only (no embeddings)"


@dataclass(frozen=True)
class SpeciesState:
    """One (species, model) of an atlas as `orthovec species` shows it; `model` None: proteins only."""

    species: str
    model: str | None
    genes: int
    proteins: int
    stored: int | None  # genes in the embedded store; None when it is not checked (server, busy, no vectors)
    state: str  # complete | incomplete | store missing | stale
    note: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def species_states(atlas: Atlas) -> list[SpeciesState]:
    """What each species really is: its tables, its last index run, and its vectors in the embedded store."""
    counts, store_note = _embedded_counts(atlas)
    rows: list[SpeciesState] = []
    for species in atlas.species_names():
        proteins_path = atlas.proteins(species)
        n_proteins = _rows(proteins_path) if proteins_path.is_file() else 0
        report = atlas.read_index_report(species)
        models = atlas.models_for(species)
        if not models:
            genes = _genes_of_proteins(proteins_path) if n_proteins > 0 else 0
            state, note = _state_without_vectors(report, n_proteins)
            rows.append(SpeciesState(species, None, genes, n_proteins, None, state, note))
        for model in models:
            genes = _rows(atlas.genes(species, model))
            stored = counts.get(model, {}).get(species, 0) if counts is not None else None
            state, note = _state(report, model, genes, stored, store_note)
            if state == "complete" and _describes_other_proteins(atlas, species, model, report):
                state, note = "stale", "vectors of an earlier proteome; run `orthovec index` with weights again"
            if min(genes, n_proteins) < 0:
                state, note = "incomplete", "a table is unreadable (damaged?); run `orthovec index` again"
            rows.append(SpeciesState(species, model, genes, n_proteins, stored, state, note))
    return rows


def _state_without_vectors(report: dict[str, object], n_proteins: int) -> tuple[str, str]:
    if n_proteins < 0:
        return "incomplete", "the proteins table is unreadable (damaged?); run `orthovec index` again"
    if report.get("state") == "complete" and report.get("model") is None and n_proteins > 0:
        return "complete", ALIGNMENT_ONLY
    why = {"committing": "a run stopped while committing", "embedding": "embedding not finished (shards?)"}
    return "incomplete", why.get(str(report.get("state")), "not indexed yet") + "; run `orthovec index` again"


def _state(report: dict[str, object], model: str, genes: int, stored: int | None, store_note: str) -> tuple[str, str]:
    last_run = report.get("model") == model
    if last_run and report.get("state") != "complete":
        why = {"committing": "a run stopped while committing", "embedding": "embedding not finished (shards?)"}
        return "incomplete", why.get(str(report.get("state")), "not embedded yet") + "; run `orthovec index` again"
    paths = report.get("paths")
    store = str(paths.get("store", "")) if last_run and isinstance(paths, dict) else ""
    if store and not store.startswith("embedded"):
        return "complete", f"vectors in {store} (not checked)"
    if stored is None:
        return "complete", store_note
    if stored != genes:
        return "store missing", f"the store holds {stored:,} of {genes:,} genes; run `orthovec index` again"
    return "complete", ""


def _describes_other_proteins(atlas: Atlas, species: str, model: str, report: dict[str, object]) -> bool:
    """Whether the gene vectors were made from other proteins than the species now has (a build
    registers a changed proteome before its index step replaces the vectors)."""
    current = report.get("proteins_sha256")
    if not current:
        return False
    try:
        described = read_provenance(atlas.genes(species, model)).get("proteins_sha256")
    except UserError:
        return False  # an unreadable table is reported as such
    return bool(described) and described != current


def _rows(path: Path) -> int:
    """Rows of a Parquet table from its footer (cheap), or -1 when it cannot be read."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowInvalid, OSError):
        return -1


def _genes_of_proteins(path: Path) -> int:
    """Distinct genes of a proteins table (one column read), or -1 when it cannot be read."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        return len(pc.unique(pq.read_table(path, columns=["gene_id"]).column("gene_id")))
    except (pa.ArrowInvalid, OSError, KeyError):
        return -1


def _embedded_counts(atlas: Atlas) -> tuple[dict[str, dict[str, int]] | None, str]:
    """Genes per model and species in the embedded store, or None and why it could not be read."""
    if not (atlas.root / "qdrant").is_dir():
        return {}, ""
    from orthovec.lookup.store import open_store

    try:
        store = open_store(atlas, read_only=True)
    except Unavailable:
        return None, "store not checked: it is being written"
    try:
        return {model: store.species_counts(model) for model in store.models()}, ""
    except UserError as error:
        return None, f"store not checked: {error}"
    finally:
        store.close()
