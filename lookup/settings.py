"""Choices of the lookup stage, importable without pyarrow or polars.

The command line lists these as option choices; keeping them here keeps `orthovec --help` fast.
"""

from __future__ import annotations

from typing import Literal

Strategy = Literal["all", "one2one", "hc-greedy", "fused"]
STRATEGIES: tuple[Strategy, ...] = ("all", "one2one", "hc-greedy", "fused")

#: The evidence that orders homologs, for `map --evidence` and `query --evidence` (the HTTP API's
#: `schemas.api.Evidence` spells the same choices; a test keeps them equal).
EVIDENCE = ("auto", "embedding", "alignment", "fused")
