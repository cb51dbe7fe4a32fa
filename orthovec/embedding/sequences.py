"""Protein sequences as ESM-2 reads them: normalised, and checked against the model's alphabet.

Indexing and sequence queries clean sequences the same way, so a query embeds exactly as the
proteome it is compared with.
"""

from __future__ import annotations

import esm

from orthovec.schemas.errors import Invalid

#: Residue letters ESM-2 has tokens for (20 standard + X B U Z O), from fair-esm's own alphabet.
ESM_RESIDUES = frozenset(t for t in esm.data.Alphabet.from_architecture("ESM-1b").standard_toks if t.isalpha())


def normalise(raw: str) -> str:
    """Upper case, whitespace and trailing stop codons removed."""
    return "".join(raw.split()).upper().rstrip("*")


def invalid_residues(sequence: str) -> str:
    """Characters of a normalised sequence that ESM-2 has no token for ('' when valid)."""
    return "".join(sorted(set(sequence) - ESM_RESIDUES))


def clean_sequence(raw: str, where: str) -> str:
    """A query sequence ready to embed, or a UserError naming `where`."""
    sequence = normalise(raw)
    if not sequence:
        raise Invalid(f"{where}: empty sequence.")
    bad = invalid_residues(sequence)
    if bad:
        raise Invalid(f"{where}: {bad!r} are not amino-acid letters ESM-2 knows (20 standard + XBUZO).")
    return sequence
