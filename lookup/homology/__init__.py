"""Homology evidence: MMseqs2 alignment, embedding similarity, one-to-one, mapping tables, import, evaluation."""
