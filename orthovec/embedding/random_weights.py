"""Randomly initialised ESM-2 checkpoints of the real architectures, in fair-esm's file layout.

For tests and benchmarks: speed does not depend on weight values, and the file goes through the
same loading code (`orthovec.embedding.model.load_model`) that users run with pretrained weights. Embeddings
from random weights carry no biology.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from esm.model.esm2 import ESM2

from orthovec.core.files import atomic_write
from orthovec.embedding.architectures import RANDOM_ARCHITECTURES, architecture_name
from orthovec.embedding.model import RANDOM_MARKER
from orthovec.schemas.errors import NotFound


def write_random_checkpoint(path: Path, arch: str, seed: int = 0) -> Path:
    """Write a random ESM-2 of `arch` to `path` (a directory gets `<model name>.pt`); return the file.

    Layout as in fair-esm's published ESM-2 files, which `_load_model_and_alphabet_core_v2` reads:
    {"model": state dict under "encoder.sentence_encoder." (and "encoder.lm_head."), "cfg": {"model":
    argparse.Namespace(encoder_layers, encoder_embed_dim, encoder_attention_heads, token_dropout)}}.
    The contact-regression weights live in a separate file there, so they are left out here too.
    """
    if arch not in RANDOM_ARCHITECTURES:
        raise NotFound(
            "is not an architecture orthovec can write.", param="arch", value=arch, choices=list(RANDOM_ARCHITECTURES)
        )
    layers, dim, heads = RANDOM_ARCHITECTURES[arch]
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / f"{architecture_name(layers, dim)}.pt"
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = ESM2(layers, dim, heads, alphabet="ESM-1b", token_dropout=True)
    finally:
        torch.random.set_rng_state(generator_state)  # leave the caller's random stream alone
    state = {
        (f"encoder.{key}" if key.startswith("lm_head.") else f"encoder.sentence_encoder.{key}"): value
        for key, value in model.state_dict().items()
        if not key.startswith("contact_head.regression")
    }
    config = argparse.Namespace(
        encoder_layers=layers, encoder_embed_dim=dim, encoder_attention_heads=heads, token_dropout=True
    )
    checkpoint = {"model": state, "cfg": {"model": config}, RANDOM_MARKER: {"seed": seed}}
    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))  # never half a checkpoint
