"""Choices of the lookup stage, importable without pyarrow or polars.

The command line lists these as option choices; keeping them here keeps `orthovec --help` fast.
"""

from __future__ import annotations

from typing import Literal

Strategy = Literal["all", "one2one", "hc-greedy", "fused"]
STRATEGIES: tuple[Strategy, ...] = ("all", "one2one", "hc-greedy", "fused")
