"""orthovec's Encoder equals fair-esm's own forward pass on the same checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from orthovec.embedding.encoder import Encoder, plan_batches, plan_pieces
from orthovec.embedding.model import LoadedModel, load_model
from orthovec.embedding.random_weights import write_random_checkpoint
from orthovec.schemas.errors import Invalid
from tests.conftest import human_sequences

AMINO = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(None, write_random_checkpoint(tmp_path_factory.mktemp("weights"), "tiny", seed=1), "cpu")


@pytest.fixture(scope="module")
def esm2_8m(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = write_random_checkpoint(tmp_path_factory.mktemp("weights"), "8M", seed=2)
    return load_model("esm2_t6_8M_UR50D", path, "cpu")


def _synthetic(n: int, seed: int, longest: int = 300) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AMINO) for _ in range(rng.randint(5, longest))) for _ in range(n)]


def _real_or_synthetic(n: int) -> list[str]:
    """Real human proteins when ../shared/data is here (some over 1022 residues), else synthetic ones."""
    try:
        human = human_sequences(400)
    except pytest.skip.Exception:
        return [*_synthetic(n, seed=0), "M" + "ACDEFGHIKL" * 120]
    return [s for s in human if len(s) < 600][: n - 2] + [s for s in human if len(s) > 1022][:2]


def _fair_esm_representations(loaded: LoadedModel, residues: str, layer: int) -> np.ndarray:
    """fair-esm's forward on one sequence: (residues, dim) of `layer`, BOS/EOS dropped."""
    _, _, tokens = loaded.alphabet.get_batch_converter()([("protein", residues)])
    with torch.no_grad():
        hidden = loaded.model(tokens, repr_layers=[layer])["representations"][layer]
    return hidden[0, 1:-1].double().numpy()


def _fair_esm_truncated_means(loaded: LoadedModel, sequences: list[str], layer: int) -> np.ndarray:
    """extract.py's recipe: the first 1022 residues, mean over residue positions."""
    return np.array([_fair_esm_representations(loaded, s[:1022], layer).mean(0) for s in sequences])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_tiny_model_equals_fair_esm_per_protein(tiny: LoadedModel, use_sdpa: bool) -> None:
    sequences = _real_or_synthetic(30)
    ours = Encoder(tiny, long_seqs="truncate", toks_per_batch=3000, use_sdpa=use_sdpa).embed(sequences)
    reference = _fair_esm_truncated_means(tiny, sequences, tiny.num_layers)
    assert ours.shape == (len(sequences), 64) and ours.dtype == np.float32
    assert _cosines(ours, reference).min() >= 0.9999


def test_8m_architecture_equals_fair_esm_on_real_human_proteins(esm2_8m: LoadedModel) -> None:
    human = human_sequences(400)
    sequences = [s for s in human if len(s) < 500][:16] + [s for s in human if len(s) > 1022][:2]
    ours = Encoder(esm2_8m, long_seqs="truncate").embed(sequences)
    reference = _fair_esm_truncated_means(esm2_8m, sequences, esm2_8m.num_layers)
    assert _cosines(ours, reference).min() >= 0.9999
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3 * np.abs(reference).max())


@pytest.mark.parametrize("layer", [0, 1])
def test_an_intermediate_layer_equals_fair_esm(tiny: LoadedModel, layer: int) -> None:
    sequences = _synthetic(12, seed=1)
    ours = Encoder(tiny, layer=layer, long_seqs="truncate").embed(sequences)
    assert _cosines(ours, _fair_esm_truncated_means(tiny, sequences, layer)).min() >= 0.9999


def test_window_mode_is_the_residue_weighted_mean_over_overlapping_windows(tiny: LoadedModel) -> None:
    rng = random.Random(5)  # a C-terminal half of another composition, which truncation would miss
    sequence = "".join(rng.choice(AMINO) for _ in range(1200)) + "".join(rng.choice("WCPG") for _ in range(1300))
    ours = Encoder(tiny, long_seqs="window").embed([sequence])[0]

    # By hand with fair-esm: windows of 1022 residues overlapping by >= 256, spread from the first residue
    # to the last; each residue's representation averaged over the windows covering it, then the mean.
    starts = [0, (len(sequence) - 1022) // 2, len(sequence) - 1022]
    assert [(p.start, p.stop) for p in plan_pieces([len(sequence)], "window", 1022, 256)] == [
        (start, start + 1022) for start in starts
    ]
    total, coverage = np.zeros((len(sequence), tiny.embed_dim)), np.zeros(len(sequence))
    for start in starts:
        total[start : start + 1022] += _fair_esm_representations(tiny, sequence[start : start + 1022], 2)
        coverage[start : start + 1022] += 1
    assert coverage.min() == 1 and coverage.max() == 2
    by_hand = (total / coverage[:, None]).mean(0)

    assert _cosines(ours[None], by_hand[None])[0] >= 0.9999
    truncated = Encoder(tiny, long_seqs="truncate").embed([sequence])[0]
    assert _cosines(truncated[None], by_hand[None])[0] < 0.99  # the windows did see the C-terminus


def test_a_protein_embeds_the_same_alone_or_in_a_batch(tiny: LoadedModel) -> None:
    sequences = _synthetic(25, seed=2, longest=500)
    encoder = Encoder(tiny, long_seqs="truncate", toks_per_batch=4096)
    batched = encoder.embed(sequences)
    alone = np.concatenate([encoder.embed([s]) for s in sequences])
    assert _cosines(batched, alone).min() >= 0.9999


def test_input_order_is_kept_and_progress_counts_everything(tiny: LoadedModel) -> None:
    sequences = [*_synthetic(20, seed=3, longest=400), "W" * 1500]
    calls: list[tuple[int, int]] = []
    encoder = Encoder(tiny, toks_per_batch=1200)
    forward = encoder.embed(sequences, progress=lambda proteins, residues: calls.append((proteins, residues)))
    backward = encoder.embed(sequences[::-1])[::-1]
    assert _cosines(forward, backward).min() >= 0.9999
    assert len(calls) > 1
    assert sum(c[0] for c in calls) == len(sequences)
    # Progress counts each protein's residues once, so it ends at exactly 100% of the proteome even
    # though two overlapping windows embed 2 x 1022 residues of the 1500-residue protein.
    assert sum(c[1] for c in calls) == sum(map(len, sequences))
    truncated: list[tuple[int, int]] = []
    Encoder(tiny, long_seqs="truncate").embed(sequences, progress=lambda p, r: truncated.append((p, r)))
    assert sum(c[1] for c in truncated) == sum(map(len, sequences))  # 1022 embedded, 1500 done


def test_batches_are_length_sorted_within_the_padded_token_budget() -> None:
    lengths = [300, 10, 1022, 50, 50, 700, 20, 300]
    batches = plan_batches(lengths, toks_per_batch=1024)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)
    assert all(len(b) == 1 or len(b) * (max(lengths[i] for i in b) + 2) <= 1024 for b in batches)
    assert batches == plan_batches(lengths, toks_per_batch=1024)


@pytest.mark.parametrize("layer", [-1, 3])
def test_a_layer_outside_the_model_is_a_user_error(tiny: LoadedModel, layer: int) -> None:
    with pytest.raises(Invalid, match=rf"layer={layer}: .*has layers 0\.\.2"):
        Encoder(tiny, layer=layer)


def test_bf16_autocast_stays_close_to_fp32(esm2_8m: LoadedModel) -> None:
    """The CUDA path's precision, checked on the CPU: bf16 autocast may round, not change the answer."""
    sequences = _real_or_synthetic(12)
    fp32 = Encoder(esm2_8m, long_seqs="truncate").embed(sequences)
    bf16 = Encoder(esm2_8m, long_seqs="truncate", precision="bf16")
    assert bf16.precision == "bf16" and Encoder(esm2_8m).precision == "fp32"  # auto on a CPU
    assert _cosines(fp32, bf16.embed(sequences)).min() >= 0.99


def test_the_fused_attention_weights_are_the_models_own_not_a_copy(tmp_path: Path) -> None:
    """Parameter memory after building the encoder equals the checkpoint's (q/k/v are views of one tensor)."""
    weights = write_random_checkpoint(tmp_path, "tiny")
    loaded = load_model(None, weights)
    checkpoint_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    encoder = Encoder(loaded)
    tensors = [*loaded.model.parameters()]
    tensors += [t for attention in encoder._attention for t in (attention.qkv_weight, attention.qkv_bias)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    assert sum(storages.values()) == checkpoint_bytes
    untouched = load_model(None, weights).model.state_dict()
    # The contact head is not in ESM-2 checkpoints: fair-esm initialises it at random on each load.
    from_checkpoint = {name: v for name, v in loaded.model.state_dict().items() if not name.startswith("contact_head.")}
    assert all(torch.equal(value, untouched[name]) for name, value in from_checkpoint.items())
