"""ESM-2 forward pass for embeddings: fair-esm's weights, a leaner path through them.

Same arithmetic as `esm.model.esm2.ESM2.forward` up to the chosen layer, with what embeddings do
not need removed or fused: no LM head, no layers past the chosen one, no (T, B, E) transposes,
one fused QKV projection, and PyTorch's `scaled_dot_product_attention` (flash / memory-efficient
kernels on CUDA, with bf16 autocast there). Outputs match fair-esm within float tolerance
(tests/test_encoder.py checks cosine >= 0.9999 per protein).

Pooling is a weighted sum over token positions: each batch row carries weights that are zero on
BOS/EOS/padding, so truncation and overlapping windows are the same code path. A sequence longer
than the window is cut into windows of `window` residues overlapping by at least `overlap`; each
residue gets weight 1 / (windows covering it × length), so the protein vector is the mean over
residues of each residue's window-averaged representation: every residue counts once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from indexer.weights import LoadedModel

LongSeqs = Literal["window", "truncate"]
#: ESM-2 was trained on crops of 1024 tokens: 1022 residues plus BOS and EOS.
MAX_RESIDUES = 1022
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Piece:
    """One row of a batch: residues [start, stop) of protein `protein`, with per-residue weights."""

    protein: int
    start: int
    stop: int
    weights: np.ndarray
    last: bool  # completes its protein (for progress counting)

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_pieces(lengths: Sequence[int], long_seqs: LongSeqs, window: int, overlap: int) -> list[Piece]:
    pieces: list[Piece] = []
    for protein, length in enumerate(lengths):
        if length <= window or long_seqs == "truncate":
            kept = min(length, window)
            pieces.append(Piece(protein, 0, kept, np.full(kept, 1.0 / kept), True))
            continue
        n_windows = math.ceil((length - overlap) / (window - overlap))
        starts = np.linspace(0, length - window, n_windows).round().astype(int)
        coverage = np.zeros(length)
        for start in starts:
            coverage[start : start + window] += 1
        for i, start in enumerate(starts):
            weights = 1.0 / (coverage[start : start + window] * length)
            pieces.append(Piece(protein, int(start), int(start) + window, weights, i == len(starts) - 1))
    return pieces


def plan_batches(pieces: Sequence[Piece], toks_per_batch: int) -> list[list[int]]:
    """Length-sorted batches whose padded size (rows × (longest + 2)) stays within the budget."""
    order = sorted(range(len(pieces)), key=lambda i: (pieces[i].length, i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        padded = (pieces[index].length + 2) * (len(current) + 1)
        if current and padded > toks_per_batch:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class Encoder:
    """Embeds protein sequences as mean-pooled residue representations of one ESM-2 layer."""

    def __init__(
        self,
        loaded: LoadedModel,
        layer: int | None = None,
        toks_per_batch: int = 4096,
        long_seqs: LongSeqs = "window",
        window: int = MAX_RESIDUES,
        overlap: int = 256,
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.layer = loaded.num_layers if layer is None else layer
        if not 0 <= self.layer <= loaded.num_layers:
            from schemas.errors import UserError

            raise UserError(f"--layer {self.layer}: {loaded.name} has layers 0..{loaded.num_layers}.")
        self.toks_per_batch = toks_per_batch
        self.long_seqs = long_seqs
        self.window = window
        self.overlap = overlap
        self.device = loaded.device
        self.dim = loaded.embed_dim
        # One (3E, E) projection instead of three (E, E) ones: one matmul reads the activations once.
        self._qkv = [
            (
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach(),
                torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]).detach(),
            )
            for a in (layer.self_attn for layer in self.model.layers[: self.layer])
        ]
        self._rotary_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def embed(self, sequences: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """(n, dim) float32 vectors in input order."""
        pieces = plan_pieces([len(s) for s in sequences], self.long_seqs, self.window, self.overlap)
        pooled = torch.zeros(len(sequences), self.dim, dtype=torch.float64)
        with torch.inference_mode():
            for batch in plan_batches(pieces, self.toks_per_batch):
                rows = [pieces[i] for i in batch]
                vectors = self._embed_rows([sequences[p.protein][p.start : p.stop] for p in rows], rows)
                pooled.index_add_(0, torch.tensor([p.protein for p in rows]), vectors.double().cpu())
                if progress is not None:
                    progress(sum(p.last for p in rows), sum(p.length for p in rows))
        return pooled.float().numpy()

    def _tokens(self, residues: list[str]) -> torch.Tensor:
        alphabet = self.loaded.alphabet
        longest = max(len(r) for r in residues)
        tokens = torch.full((len(residues), longest + 2), alphabet.padding_idx, dtype=torch.int64)
        tokens[:, 0] = alphabet.cls_idx
        for row, sequence in enumerate(residues):
            tokens[row, 1 : len(sequence) + 1] = torch.tensor([alphabet.get_idx(c) for c in sequence])
            tokens[row, len(sequence) + 1] = alphabet.eos_idx
        return tokens

    def _embed_rows(self, residues: list[str], rows: list[Piece]) -> torch.Tensor:
        tokens = self._tokens(residues).to(self.device)
        weights = torch.zeros(tokens.shape, dtype=torch.float32)
        for row, piece in enumerate(rows):
            weights[row, 1 : piece.length + 1] = torch.from_numpy(piece.weights)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()
        )
        with autocast:
            hidden = self._forward(tokens)  # (batch, tokens, dim)
        return torch.einsum("bt,btd->bd", weights.to(self.device), hidden.float())

    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        model = self.model
        padding = tokens.eq(model.padding_idx)  # (batch, tokens)
        x = model.embed_scale * model.embed_tokens(tokens)
        if model.token_dropout:
            # fair-esm rescales embeddings by the training mask ratio (no <mask> tokens at inference).
            masked = tokens.eq(model.mask_idx)
            x = x.masked_fill(masked.unsqueeze(-1), 0.0)
            observed = masked.sum(-1).to(x.dtype) / (~padding).sum(-1)
            x = x * (1 - 0.15 * 0.8) / (1 - observed)[:, None, None]
        x = x * (~padding).unsqueeze(-1).to(x.dtype)
        # Boolean mask, True = may attend; None when nothing is padded (lets SDPA pick flash kernels).
        attend = (~padding)[:, None, None, :] if padding.any() else None
        cos, sin = self._rotary(tokens.shape[1])
        for index in range(self.layer):
            x = self._block(index, x, attend, cos, sin)
        if self.layer == model.num_layers:
            x = model.emb_layer_norm_after(x)
        return x

    def _rotary(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if length not in self._rotary_cache:
            inv_freq = self.model.layers[0].self_attn.rot_emb.inv_freq
            positions = torch.arange(length, device=inv_freq.device, dtype=inv_freq.dtype)
            freqs = torch.outer(positions, inv_freq)
            angles = torch.cat((freqs, freqs), dim=-1)  # (tokens, head_dim)
            self._rotary_cache[length] = (angles.cos(), angles.sin())
        return self._rotary_cache[length]

    def _block(
        self, index: int, x: torch.Tensor, attend: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        layer = self.model.layers[index]
        attention = layer.self_attn
        batch, length, dim = x.shape
        heads = attention.num_heads
        weight, bias = self._qkv[index]
        qkv = F.linear(layer.self_attn_layer_norm(x), weight, bias)  # (batch, tokens, 3 * dim)
        qkv = qkv.view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # (3, batch, heads, tokens, hd)
        q, k, v = _rotate(qkv[0], cos, sin), _rotate(qkv[1], cos, sin), qkv[2]
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # scale = head_dim ** -0.5
        context = context.transpose(1, 2).reshape(batch, length, dim)
        x = x + attention.out_proj(context)
        return x + layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, as esm.rotary_embedding.apply_rotary_pos_emb."""
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((-second, first), dim=-1) * sin.to(x.dtype)
