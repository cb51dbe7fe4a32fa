"""ESM-2 shapes and the choices that define an embedding, importable without torch.

Command-line options list these choices; keeping them free of torch keeps `orthovec --help` fast.
"""

from __future__ import annotations

import re
from typing import Literal

#: name -> (layers, embedding dim, attention heads), as published by fair-esm.
ESM2_ARCHITECTURES: dict[str, tuple[int, int, int]] = {
    "esm2_t6_8M_UR50D": (6, 320, 20),
    "esm2_t12_35M_UR50D": (12, 480, 20),
    "esm2_t30_150M_UR50D": (30, 640, 20),
    "esm2_t33_650M_UR50D": (33, 1280, 20),
    "esm2_t36_3B_UR50D": (36, 2560, 40),
    "esm2_t48_15B_UR50D": (48, 5120, 40),
}
#: Unpublished shapes (random-weight test models) are named like this; they need --weights.
CUSTOM_NAME = re.compile(r"^esm2_t(\d+)_d(\d+)_custom$")

#: `random-weights --arch` -> (layers, embedding dim, attention heads). "tiny" is for unit tests:
#: head_dim 16 (even, as rotary embeddings need), 64 divisible by 4 heads.
RANDOM_ARCHITECTURES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 64, 4),
    **{name.split("_")[2]: shape for name, shape in ESM2_ARCHITECTURES.items() if "15B" not in name},
}

LongSeqs = Literal["window", "truncate"]
LONG_SEQS: tuple[LongSeqs, ...] = ("window", "truncate")
#: "auto": bf16 autocast on CUDA, fp32 elsewhere. bf16 autocast also runs on CPUs, where it pays off
#: only with native bf16 instructions (AVX512-BF16, AMX); pooling always sums in float64.
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16")
#: ESM-2 was trained on crops of 1024 tokens: 1022 residues plus BOS and EOS.
MAX_RESIDUES = 1022


def architecture_name(layers: int, dim: int) -> str:
    """The published model with this shape, else `esm2_t<layers>_d<dim>_custom`."""
    for name, (n_layers, n_dim, _) in ESM2_ARCHITECTURES.items():
        if (n_layers, n_dim) == (layers, dim):
            return name
    return f"esm2_t{layers}_d{dim}_custom"
