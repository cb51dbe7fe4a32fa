"""Indexing hands freed batch memory back to the OS once it has grown past the slack, not before."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from orthovec.indexer.memory import MemoryReleaser, resident_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and trims glibc's heap")


def test_growth_past_the_slack_is_trimmed_and_growth_within_it_is_not() -> None:
    generous, strict = MemoryReleaser(slack_bytes=1 << 40), MemoryReleaser(slack_bytes=16 << 20)
    held = np.ones(64 << 20, dtype=np.uint8)  # 64 MB, touched, so resident
    assert resident_bytes() > 0
    generous()
    strict()
    assert (generous.trims, strict.trims) == (0, 1)
    strict()
    assert strict.trims == 1  # measured again from the trim, not from the start
    assert held.sum() == held.size
