"""Embed raw query sequences exactly as the atlas embedded its proteomes.

A query vector is only comparable to the stored gene vectors if it comes from the same weights,
layer and long-sequence rule; those are read from the gene table's provenance and checked, so a
mismatch is an error instead of silently meaningless scores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from orthovec.embedding.architectures import LongSeqs, Precision
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Unavailable
from orthovec.schemas.space import EmbeddingSpace
from orthovec.schemas.tables import read_provenance

SequenceEmbedder = Callable[[list[str]], np.ndarray]


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


def embedder_for_atlas(atlas: Atlas, model: str, weights: Path | None, device: str = "auto") -> SequenceEmbedder:
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
            "comparable. Pass the checkpoint the atlas was indexed with (--weights)."
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
        return encoder.embed(cleaned)

    return embed
