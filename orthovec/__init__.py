"""orthovec: map genes across species with protein language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orthovec")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
