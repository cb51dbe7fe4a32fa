"""Protein embeddings: mean-pooled residue representations of one ESM-2 layer.

The forward pass is fair-esm's `ESM2.forward` arithmetic up to the chosen layer (embed_scale,
token-dropout rescaling by (1 - 0.15 * 0.8), zeroed padding, pre-LayerNorm blocks with rotary
attention, `emb_layer_norm_after` on the last layer), on the model's own parameters, with what
embeddings do not need left out: no LM head, no layers past the chosen one, no (tokens, batch, dim)
transposes, no head-averaged attention weights; see attention.py for the attention itself.
tests/test_embed.py checks per-protein cosine >= 0.9999 against fair-esm's own forward pass.

Pooling is a weighted sum over token positions: each batch row carries weights that are zero on
BOS/EOS/padding, so truncation and windows share one code path.

Long sequences (more than `window` residues; ESM-2 was trained on crops of 1022 residues + BOS/EOS):
- "truncate": the first 1022 residues, exactly as fair-esm's extract.py `--truncation_seq_length 1022`.
- "window" (default): the fewest windows of `window` residues that overlap by at least `overlap`,
  spread evenly from the first residue to the last. Every residue's representation is averaged over
  the windows that cover it, and the protein vector is the mean over all residues of those averages:
  each residue counts once, whatever the overlap. Chosen over "mean of window vectors" so that a
  residue in an overlap does not weigh twice, and over truncation so that C-terminal domains count.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from orthovec.embedding.architectures import LONG_SEQS, MAX_RESIDUES, PRECISIONS, LongSeqs, Precision
from orthovec.embedding.attention import FusedSelfAttention, rotary_tables
from orthovec.embedding.model import LoadedModel
from orthovec.schemas.errors import Invalid

Progress = Callable[[int, int], None]


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """What "auto" means on `device`; fp32 and bf16 stay as asked."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


@dataclass(frozen=True)
class Piece:
    """One batch row: residues [start, stop) of protein number `protein`, with pooling weights."""

    protein: int
    start: int
    stop: int
    weights: np.ndarray  # (stop - start,) summing, over all of a protein's pieces, to 1
    completes: bool  # the protein's last piece (for progress counting)
    # The protein's residues this piece accounts for in progress: over all its pieces they sum to the
    # protein's length, whether windows overlap or truncation embeds fewer residues.
    progress_residues: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_pieces(lengths: Sequence[int], long_seqs: LongSeqs, window: int, overlap: int) -> list[Piece]:
    """The rows to embed for proteins of these lengths, in protein order."""
    pieces: list[Piece] = []
    for protein, length in enumerate(lengths):
        if length <= window or long_seqs == "truncate":
            kept = min(length, window)
            pieces.append(Piece(protein, 0, kept, np.full(kept, 1.0 / kept), True, length))
            continue
        n_windows = math.ceil((length - overlap) / (window - overlap))
        starts = np.linspace(0, length - window, n_windows).round().astype(int)
        coverage = np.zeros(length)
        for start in starts:
            coverage[start : start + window] += 1
        covered = 0  # windows start in increasing order: each counts the residues no earlier one covered
        for i, start in enumerate(starts):
            weights = 1.0 / (coverage[start : start + window] * length)
            stop = int(start) + window
            last = i == len(starts) - 1
            pieces.append(Piece(protein, int(start), stop, weights, last, stop - max(int(start), covered)))
            covered = stop
    return pieces


def plan_batches(lengths: Sequence[int], toks_per_batch: int) -> list[list[int]]:
    """Indices grouped into length-sorted batches of at most `toks_per_batch` padded tokens.

    A batch's size is rows × (longest + 2), BOS and EOS included; a row longer than the budget
    goes alone. Ties keep input order, so the plan is a function of the lengths only.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (lengths[index] + 2) * (len(current) + 1) > toks_per_batch:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class Encoder:
    """Embeds protein sequences with one ESM-2 layer, mean-pooled over residues."""

    def __init__(
        self,
        loaded: LoadedModel,
        layer: int | None = None,
        toks_per_batch: int = 4096,
        long_seqs: LongSeqs = "window",
        window: int = MAX_RESIDUES,
        overlap: int = 256,
        use_sdpa: bool = True,
        precision: Precision = "auto",
    ) -> None:
        self.layer = loaded.num_layers if layer is None else layer
        if not 0 <= self.layer <= loaded.num_layers:
            raise Invalid(f"{loaded.name} has layers 0..{loaded.num_layers}.", param="layer", value=self.layer)
        if long_seqs not in ("window", "truncate"):
            raise Invalid("is not a rule for long sequences.", param="long_seqs", value=long_seqs, choices=LONG_SEQS)
        if not 0 < window <= MAX_RESIDUES or not 0 <= overlap < window:
            raise Invalid(f"window {window} / overlap {overlap}: need 0 <= overlap < window <= {MAX_RESIDUES}.")
        if precision not in PRECISIONS:
            raise Invalid("is not a precision.", param="precision", value=precision, choices=PRECISIONS)
        if toks_per_batch < 3:
            raise Invalid("must be at least 3.", param="toks_per_batch", value=toks_per_batch)
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.dim = loaded.embed_dim
        self.toks_per_batch = toks_per_batch
        self.long_seqs: LongSeqs = long_seqs
        self.window = window
        self.overlap = overlap
        self.use_sdpa = use_sdpa
        self.precision = resolve_precision(precision, self.device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        # On CUDA, host tensors are pinned and copied without blocking, and pooled vectors stay on the
        # GPU until the end, so tokenising the next batch overlaps the current one's kernels instead
        # of waiting for them (a per-batch .cpu() would synchronise every batch).
        self._non_blocking = self.device.type == "cuda"
        with torch.no_grad():
            used = self.model.layers[: self.layer]
            self._attention = [FusedSelfAttention(block.self_attn) for block in used]
        # One cos/sin table for the longest batch, sliced per batch: a table per batch length grew
        # with the proteome's length diversity (up to 1,024 tables; 67 MB at head_dim 16).
        inv_freq = self.model.layers[0].self_attn.rot_emb.inv_freq if self.model.layers else None
        self._rotary = rotary_tables(inv_freq, window + 2) if inv_freq is not None else None
        # Residue letter -> token index, for every byte (unknown letters -> <unk>, as the alphabet does).
        alphabet = loaded.alphabet
        self._token_of_byte = np.full(256, alphabet.unk_idx, dtype=np.int64)
        for token, index in alphabet.tok_to_idx.items():
            if len(token) == 1:
                self._token_of_byte[ord(token)] = index

    def embed(self, sequences: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """(n, dim) float32 vectors in input order; `progress(proteins, residues)` after each batch."""
        pieces = plan_pieces([len(s) for s in sequences], self.long_seqs, self.window, self.overlap)
        pooled = torch.zeros(len(sequences), self.dim, dtype=torch.float64, device=self.device)
        with torch.inference_mode():
            for batch in plan_batches([p.length for p in pieces], self.toks_per_batch):
                rows = [pieces[i] for i in batch]
                vectors = self._embed_rows([sequences[p.protein][p.start : p.stop] for p in rows], rows)
                pooled.index_add_(0, self._to_device(torch.tensor([p.protein for p in rows])), vectors.double())
                if progress is not None:
                    progress(sum(p.completes for p in rows), sum(p.progress_residues for p in rows))
        return pooled.float().cpu().numpy()

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if not self._non_blocking:
            return host.to(self.device)
        return host.pin_memory().to(self.device, non_blocking=True)

    def _tokens(self, residues: list[str]) -> torch.Tensor:
        """BOS + residues + EOS, padded: (batch, longest + 2), as alphabet.get_batch_converter()."""
        alphabet = self.loaded.alphabet
        tokens = np.full((len(residues), max(map(len, residues)) + 2), alphabet.padding_idx, dtype=np.int64)
        tokens[:, 0] = alphabet.cls_idx
        for row, sequence in enumerate(residues):
            letters = np.frombuffer(sequence.encode(), np.uint8)
            tokens[row, 1 : len(sequence) + 1] = self._token_of_byte[letters]
            tokens[row, len(sequence) + 1] = alphabet.eos_idx
        return torch.from_numpy(tokens)

    def _embed_rows(self, residues: list[str], rows: list[Piece]) -> torch.Tensor:
        """(rows, dim) weighted sums of the chosen layer's token representations."""
        tokens = self._tokens(residues)
        weights = torch.zeros(tokens.shape, dtype=torch.float32)
        for row, piece in enumerate(rows):
            weights[row, 1 : piece.length + 1] = torch.from_numpy(piece.weights)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype != torch.float32
            else contextlib.nullcontext()
        )
        with autocast:
            hidden = self.forward(self._to_device(tokens))  # (batch, tokens, dim)
        return torch.einsum("bt,btd->bd", self._to_device(weights), hidden.float())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) token indices -> (batch, tokens, dim) representations of `self.layer`."""
        model = self.model
        padding = tokens.eq(model.padding_idx)  # (batch, tokens)
        x = model.embed_scale * model.embed_tokens(tokens)  # (batch, tokens, dim)
        if model.token_dropout:
            # Trained with 15% × 80% of tokens masked to zero, so fair-esm rescales by the observed ratio.
            masked = tokens.eq(model.mask_idx)
            x = x.masked_fill(masked.unsqueeze(-1), 0.0)
            observed = masked.sum(-1).to(x.dtype) / (~padding).sum(-1)
            x = x * (1 - 0.15 * 0.8) / (1 - observed)[:, None, None]
        x = x * (~padding).unsqueeze(-1).to(x.dtype)
        # Boolean mask, True = may attend; None when nothing is padded (lets SDPA pick flash kernels).
        attend = (~padding)[:, None, None, :] if padding.any() else None
        cos, sin = self._rotary_tables(tokens.shape[1])
        for block, attention in zip(model.layers, self._attention, strict=False):
            x = x + attention(block.self_attn_layer_norm(x), attend, cos, sin, self.use_sdpa)
            # F.gelu (erf form) is fair-esm's gelu in one fused kernel instead of five elementwise ops.
            x = x + block.fc2(F.gelu(block.fc1(block.final_layer_norm(x))))
        if self.layer == model.num_layers:
            x = model.emb_layer_norm_after(x)
        return x

    def _rotary_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for positions 0..length-1 (rows of a position do not depend on the length)."""
        if self._rotary is None:
            return torch.empty(0), torch.empty(0)
        cos, sin = self._rotary
        return cos[:length], sin[:length]
