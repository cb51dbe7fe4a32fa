"""Query sequences: read from FASTA, checked, and embedded exactly as the atlas embedded its proteomes.

A query vector is only comparable to the stored gene vectors if it comes from the same weights,
layer and long-sequence rule; those are read from the gene table's provenance and checked, so a
mismatch is an error instead of silently meaningless scores. Reading and checking sequences loads
no model code: a sequence searched with MMseqs2 alone needs none.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np

from orthovec.embedding.architectures import LongSeqs, Precision
from orthovec.schemas.api import SEQUENCE_PATTERN
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, Unavailable, UserError
from orthovec.schemas.space import EmbeddingSpace
from orthovec.schemas.tables import read_provenance

#: sequences, model -> (len(sequences), dim) vectors comparable with the store's gene vectors.
SequenceEmbedder = Callable[[list[str], str], np.ndarray]
_RESIDUES = re.compile(SEQUENCE_PATTERN)


def clean_query(raw: str, where: str) -> str:
    """A query sequence in upper case without whitespace or a final stop codon, or `Invalid` naming
    `where`: the letters ESM-2 has tokens for, the rule the HTTP API also applies."""
    sequence = "".join(raw.split()).upper()
    if not sequence.rstrip("*"):
        raise Invalid(f"{where}: empty sequence.")
    if not _RESIDUES.fullmatch(sequence):
        bad = "".join(sorted(set(sequence.rstrip("*")) - set("ABCDEFGHIKLMNOPQRSTUVWXYZ")))
        raise Invalid(f"{where}: {bad!r} are not amino-acid letters ESM-2 knows (20 standard + XBUZO).")
    return sequence.rstrip("*")


def _record_id(header: str) -> str:
    """A FASTA record's name: its first word, or the accession of a UniProt `db|ACCESSION|NAME` one."""
    first = header.split()[0] if header.split() else ""
    parts = first.split("|")
    return parts[1] if len(parts) == 3 and parts[0] in ("sp", "tr") else first


def read_query_fasta(path: Path) -> list[tuple[str, str]]:
    """(name, sequence) of every record of a query FASTA (plain or gzip), each sequence checked."""
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    records = []
    try:
        with opener(path, "rt") as handle:
            for number, (header, sequence) in enumerate(SimpleFastaParser(handle), start=1):
                name = _record_id(header) or f"record {number}"
                records.append((name, clean_query(sequence, f"{path}, record {number} ({name})")))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        if isinstance(error, UserError):
            raise
        raise Invalid(f"{path}: not a readable FASTA file ({error}).") from error
    if not records:
        raise Invalid(f"{path}: no FASTA records (each starts with a '>' header line).")
    return records


def atlas_embedding_settings(atlas: Atlas, model: str) -> dict[str, object]:
    """Provenance of the first gene table built with `model` (all of one model share settings)."""
    for species in atlas.species_names():
        path = atlas.genes(species, model)
        if path.is_file():
            return read_provenance(path)
    return {}


def remembered_weights(settings: dict[str, object]) -> Path | None:
    """The checkpoint the atlas was indexed with, if it is still where it was (its sha256 is checked on use)."""
    path = settings.get("weights_path")
    return Path(str(path)) if path and Path(str(path)).is_file() else None


def sequence_weights(atlas: Atlas, models: Sequence[str], weights: Path | None = None) -> Path | None:
    """The checkpoint sequences are embedded with: `weights`, else the first the atlas's `models`
    were indexed with that is still where it was; None (MMseqs2 alone) when there is none. The
    command line and the server both ask this, so a sequence gets the same answer from either."""
    if weights is not None:
        return weights
    return next((found for m in models if (found := remembered_weights(atlas_embedding_settings(atlas, m)))), None)


def embedder_for_atlas(
    atlas: Atlas, model: str, weights: Path | None, device: str = "auto"
) -> Callable[[list[str]], np.ndarray]:
    """A function sequences → (n, dim) vectors, with the atlas's model, weights, layer, windows and precision.

    `weights` None means the checkpoint the atlas remembers from indexing, else the hub cache.
    """
    from orthovec.embedding.encoder import Encoder
    from orthovec.embedding.model import load_model
    from orthovec.embedding.sequences import clean_sequence

    settings = atlas_embedding_settings(atlas, model)
    space = EmbeddingSpace.from_provenance(settings)
    loaded = load_model(model, weights or remembered_weights(settings), device)
    if space is not None and space.weights_sha256 != loaded.weights_sha256:
        raise Unavailable(
            f"The atlas {atlas.root} was built with {model} weights sha256 {space.weights_sha256[:12]}…, but "
            f"the weights given have sha256 {loaded.weights_sha256[:12]}…; query vectors would not be "
            "comparable. Pass the checkpoint the atlas was indexed with.",
            param="weights",
        )
    # The Encoder checks these values again, so the casts only name the types they were written as.
    encoder = Encoder(
        loaded,
        layer=space.layer if space else None,
        long_seqs=cast(LongSeqs, space.long_seqs if space else "window"),
        precision=cast(Precision, space.precision if space else "auto"),
    )

    def embed(sequences: list[str]) -> np.ndarray:
        cleaned = [clean_sequence(s, f"query sequence {i + 1}") for i, s in enumerate(sequences)]
        # One sequence per forward pass: padded beside others, a vector moved in the 6th decimal
        # with its batch, so `query --fasta` and a server taking the same records in requests of 32
        # gave different cosines (5 of 32 sequences). Queries are few; proteomes stay batched.
        return np.vstack([encoder.embed([sequence]) for sequence in cleaned]) if cleaned else encoder.embed([])

    return embed


def lazy_embedder(atlas: Atlas, weights: Path, device: str) -> SequenceEmbedder:
    """One embedder per model, built on first use (loading ESM-2 takes seconds to minutes).

    A residue problem in a request stays the caller's error (4xx); weights that cannot serve this
    atlas (wrong checkpoint, unreadable file) are `Unavailable` on every call (503 over HTTP).
    """
    built: dict[str, Callable[[list[str]], np.ndarray]] = {}
    build_lock = threading.Lock()

    def embed(sequences: list[str], model: str) -> np.ndarray:
        with build_lock:  # two first requests must not load the model twice
            if model not in built:
                try:
                    built[model] = embedder_for_atlas(atlas, model, weights, device)
                except UserError as error:
                    raise Unavailable(f"Cannot embed sequences with {weights}: {error}") from error
        return built[model](sequences)

    return embed
