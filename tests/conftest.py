"""Shared fixtures: paths to ../shared/data and small stores."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file from ../shared/data, or a skip with the reason when this checkout has none."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"needs {path} (../shared/data is not beside this checkout)")
    return path
