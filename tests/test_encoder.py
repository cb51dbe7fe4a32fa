"""orthovec's embedding path equals fair-esm's own forward pass on the same checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.encoder import Encoder, plan_pieces
from indexer.weights import LoadedModel, load_model
from tests.conftest import human_sequences

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _synthetic(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AMINO) for _ in range(rng.randint(5, 300))) for _ in range(n)]


def _fair_esm_mean(loaded: LoadedModel, sequences: list[str], layer: int) -> np.ndarray:
    """fair-esm's extract.py recipe: batch converter, forward, mean over residues 1..L."""
    convert = loaded.alphabet.get_batch_converter(truncation_seq_length=1022)
    vectors = []
    with torch.no_grad():
        for sequence in sequences:
            _, _, tokens = convert([("protein", sequence)])
            hidden = loaded.model(tokens, repr_layers=[layer])["representations"][layer]
            vectors.append(hidden[0, 1 : min(len(sequence), 1022) + 1].mean(0).numpy())
    return np.array(vectors)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_tiny_model_matches_fair_esm_per_protein(tiny_weights: Path) -> None:
    loaded = load_model(None, tiny_weights, "cpu")
    sequences = [*_synthetic(40), "M" + "ACDEFGHIKL" * 120]  # one over 1022 residues
    ours = Encoder(loaded, long_seqs="truncate", toks_per_batch=2048).embed(sequences)
    assert _cosines(ours, _fair_esm_mean(loaded, sequences, loaded.num_layers)).min() >= 0.9999


def test_8m_architecture_matches_fair_esm_on_real_human_proteins(weights_8m: Path) -> None:
    loaded = load_model("esm2_t6_8M_UR50D", weights_8m, "cpu")
    sequences = [s for s in human_sequences(80) if len(s) < 700][:24]
    sequences.append(next(s for s in human_sequences(400) if len(s) > 1022))
    ours = Encoder(loaded, long_seqs="truncate").embed(sequences)
    reference = _fair_esm_mean(loaded, sequences, loaded.num_layers)
    assert _cosines(ours, reference).min() >= 0.9999
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3 * np.abs(reference).max())


def test_an_intermediate_layer_matches_fair_esm(tiny_weights: Path) -> None:
    loaded = load_model(None, tiny_weights, "cpu")
    sequences = _synthetic(10, seed=1)
    ours = Encoder(loaded, layer=1, long_seqs="truncate").embed(sequences)
    assert _cosines(ours, _fair_esm_mean(loaded, sequences, 1)).min() >= 0.9999


def test_window_mode_averages_overlapping_windows_residue_by_residue(tiny_weights: Path) -> None:
    loaded = load_model(None, tiny_weights, "cpu")
    sequence = "".join(random.Random(5).choice(AMINO) for _ in range(2500))
    encoder = Encoder(loaded, long_seqs="window")
    ours = encoder.embed([sequence])[0]
    # By hand with fair-esm: per-residue representations of each window, averaged where windows
    # overlap, then the mean over all 2500 residues.
    pieces = plan_pieces([len(sequence)], "window", 1022, 256)
    assert len(pieces) == 3 and pieces[0].start == 0 and pieces[-1].stop == len(sequence)
    total, coverage = np.zeros((len(sequence), loaded.embed_dim)), np.zeros(len(sequence))
    convert = loaded.alphabet.get_batch_converter()
    with torch.no_grad():
        for piece in pieces:
            _, _, tokens = convert([("w", sequence[piece.start : piece.stop])])
            hidden = loaded.model(tokens, repr_layers=[2])["representations"][2][0, 1:-1].numpy()
            total[piece.start : piece.stop] += hidden
            coverage[piece.start : piece.stop] += 1
    expected = (total / coverage[:, None]).mean(0)
    assert _cosines(ours[None], expected[None])[0] >= 0.9999


def test_batching_and_order_do_not_change_a_protein_vector(tiny_weights: Path) -> None:
    loaded = load_model(None, tiny_weights, "cpu")
    sequences = _synthetic(30, seed=2)
    together = Encoder(loaded, toks_per_batch=4096).embed(sequences)
    alone = np.vstack([Encoder(loaded).embed([s]) for s in sequences[:5]])
    reversed_order = Encoder(loaded, toks_per_batch=600).embed(sequences[::-1])[::-1]
    assert _cosines(together[:5], alone).min() >= 0.9999
    assert _cosines(together, reversed_order).min() >= 0.9999


def test_progress_counts_every_protein_and_residue_once(tiny_weights: Path) -> None:
    loaded = load_model(None, tiny_weights, "cpu")
    sequences = [*_synthetic(12, seed=3), "A" * 2100]
    seen = {"proteins": 0, "residues": 0}

    def advance(proteins: int, residues: int) -> None:
        seen["proteins"] += proteins
        seen["residues"] += residues

    Encoder(loaded, toks_per_batch=1200, long_seqs="window").embed(sequences, progress=advance)
    assert seen["proteins"] == len(sequences)
    assert seen["residues"] >= sum(len(s) for s in sequences)  # window overlaps are real work


@pytest.mark.parametrize("layer", [-1, 3])
def test_a_layer_outside_the_model_is_a_user_error(tiny_weights: Path, layer: int) -> None:
    from schemas.errors import UserError

    with pytest.raises(UserError, match=r"has layers 0\.\.2"):
        Encoder(load_model(None, tiny_weights, "cpu"), layer=layer)
