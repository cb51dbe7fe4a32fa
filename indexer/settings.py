"""Choices and defaults of indexing, importable without torch or pyarrow.

The command line lists these as option choices; keeping them here keeps `orthovec --help` fast.
"""

from __future__ import annotations

from typing import Literal

Pooling = Literal["mean", "max", "canonical"]
POOLINGS: tuple[Pooling, ...] = ("mean", "max", "canonical")
#: Proteins whose header names no gene: report and skip them, or keep each as its own gene.
Unresolved = Literal["report", "self"]
#: Residues per content-addressed embedding chunk: small enough that a kill loses little work (seconds
#: on a GPU, a minute or two for 8M on a CPU), large enough that the cache stays a few hundred files.
CHUNK_RESIDUES = 200_000
