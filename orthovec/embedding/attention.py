"""ESM-2 self-attention on fair-esm's weights, through `scaled_dot_product_attention`.

fair-esm's `MultiheadAttention` works in (tokens, batch, dim), projects q, k and v with three
matmuls, materialises the (batch × heads, tokens, tokens) scores, softmaxes them in float32 and,
because `TransformerLayer` asks for them, averages the attention weights over heads as well. For
embeddings none of that is needed: this module keeps (batch, tokens, dim), projects q, k and v in
one matmul on the concatenated weights, applies the same rotary embedding, and hands the rest to
PyTorch's SDPA (flash / memory-efficient kernels on CUDA, a fused kernel on CPU). The explicit
path (`use_sdpa=False`) is the same arithmetic as fair-esm, kept for comparison and benchmarks.

No fair-esm code is patched. The q, k and v projections' parameters are rebound to row slices of
the one fused tensor (same values, same module), so the fused weights are not a second copy: for
650M the copy would have held about 0.65 GB of fp32 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from esm.multihead_attention import MultiheadAttention
from torch import nn


def rotary_tables(inv_freq: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (tokens, head_dim) as esm.rotary_embedding.RotaryEmbedding builds them."""
    positions = torch.arange(length, device=inv_freq.device, dtype=inv_freq.dtype)
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)  # (tokens, head_dim)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, as esm.rotary_embedding.apply_rotary_pos_emb."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class FusedSelfAttention:
    """One layer's self-attention: fused QKV projection, rotary, SDPA (or explicit softmax)."""

    def __init__(self, attention: MultiheadAttention) -> None:
        if attention.rot_emb is None or attention.bias_k is not None:
            raise ValueError("expected ESM-2 attention: rotary embeddings, no bias_kv")
        self.heads = attention.num_heads
        self.head_dim = attention.head_dim
        self.scaling = attention.scaling  # head_dim ** -0.5, SDPA's default scale too
        # One (3 * dim, dim) projection instead of three (dim, dim) ones: the activations are read once.
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        self.qkv_weight = torch.cat([p.weight for p in projections]).detach()  # (3 * dim, dim)
        self.qkv_bias = torch.cat([p.bias for p in projections]).detach()
        dim = attention.embed_dim
        for i, projection in enumerate(projections):
            rows = slice(i * dim, (i + 1) * dim)
            projection.weight = nn.Parameter(self.qkv_weight[rows], requires_grad=False)
            projection.bias = nn.Parameter(self.qkv_bias[rows], requires_grad=False)
        self.out_proj = attention.out_proj

    def __call__(
        self,
        x: torch.Tensor,
        attend: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        use_sdpa: bool = True,
    ) -> torch.Tensor:
        """x (batch, tokens, dim) -> (batch, tokens, dim); `attend` (batch, 1, 1, tokens) True = real key."""
        batch, length, dim = x.shape
        qkv = F.linear(x, self.qkv_weight.to(x.dtype), self.qkv_bias.to(x.dtype))  # (batch, tokens, 3 * dim)
        qkv = qkv.view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # (3, batch, heads, tokens, head_dim); rotate q and k together in one pass.
        qk = apply_rotary(qkv[:2], cos.to(qkv.dtype), sin.to(qkv.dtype))
        q, k, v = qk[0], qk[1], qkv[2]
        if use_sdpa:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        else:
            scores = torch.matmul(q * self.scaling, k.transpose(-1, -2))  # (batch, heads, tokens, tokens)
            if attend is not None:
                scores = scores.masked_fill(~attend, float("-inf"))
            context = torch.matmul(F.softmax(scores.float(), dim=-1).to(v.dtype), v)
        context = context.transpose(1, 2).reshape(batch, length, dim)  # (batch, tokens, dim)
        return self.out_proj(context)
