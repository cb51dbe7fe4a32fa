"""Embed raw query sequences exactly as the atlas embedded its proteomes.

A query vector is only comparable to the stored gene vectors if it comes from the same weights,
layer and long-sequence rule; those are read from the gene table's provenance and checked, so a
mismatch is an error instead of silently meaningless scores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import read_provenance

SequenceEmbedder = Callable[[list[str]], np.ndarray]


def atlas_embedding_settings(atlas: Atlas, model: str) -> dict[str, object]:
    """Provenance of the first gene table built with `model` (all of one model share settings)."""
    for species in atlas.species_names():
        path = atlas.genes(species, model)
        if path.is_file():
            return read_provenance(path)
    return {}


def embedder_for_atlas(atlas: Atlas, model: str, weights: Path | None, device: str = "auto") -> SequenceEmbedder:
    """A function sequences → (n, dim) vectors, with the atlas's model, weights, layer, windows and precision."""
    from orthovec.indexer.embed import Encoder
    from orthovec.indexer.model import load_model
    from orthovec.indexer.proteome import clean_sequence

    settings = atlas_embedding_settings(atlas, model)
    loaded = load_model(model, weights, device)
    expected_sha = settings.get("weights_sha256")
    if expected_sha and expected_sha != loaded.weights_sha256:
        raise UserError(
            f"The atlas {atlas.root} was built with {model} weights sha256 {str(expected_sha)[:12]}…, but "
            f"the weights given have sha256 {loaded.weights_sha256[:12]}…; query vectors would not be "
            "comparable. Pass the checkpoint the atlas was indexed with (--weights)."
        )
    layer = settings.get("layer")
    long_seqs = str(settings.get("long_seqs", "window"))
    encoder = Encoder(
        loaded,
        layer=int(layer) if layer is not None else None,
        long_seqs=long_seqs,  # type: ignore[arg-type]
        precision=str(settings.get("precision", "auto")),  # type: ignore[arg-type]
    )

    def embed(sequences: list[str]) -> np.ndarray:
        cleaned = [clean_sequence(s, f"query sequence {i + 1}") for i, s in enumerate(sequences)]
        return encoder.embed(cleaned)

    return embed
