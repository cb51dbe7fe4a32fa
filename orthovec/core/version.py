"""The installed distribution's version, stamped into every table's provenance."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orthovec")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
