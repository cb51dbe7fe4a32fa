"""Logging and warnings: how the library reports, without printing.

Progress and information go to `logging.getLogger("orthovec.<stage>")` (as scanpy's `logg` does);
data problems a user should see and may want to filter (non-integer counts, duplicate names,
proteins set aside) are `warnings.warn(..., DataWarning)`, so Python users get them once per
place and can silence or escalate them. The library never attaches handlers beyond a
`NullHandler`; the CLI attaches one (`attach_cli_handler`) that prints plain lines.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

ROOT = "orthovec"
logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(stage: str) -> logging.Logger:
    """The logger of one stage or module: `orthovec.<stage>`."""
    return logging.getLogger(f"{ROOT}.{stage}")


class OrthovecWarning(UserWarning):
    """Every warning orthovec emits: `warnings.filterwarnings("ignore", category=OrthovecWarning)`."""


class DataWarning(OrthovecWarning):
    """Input that can be used, but not as given: records set aside, values coerced, names repeated."""


class OrthovecDeprecationWarning(OrthovecWarning, DeprecationWarning):
    """An option or spelling that still works and will go: the message names its replacement."""


# Python hides DeprecationWarnings outside __main__ by default; ours name an option the user typed,
# so they are shown (once per place, as any warning) unless the user filters them.
warnings.filterwarnings("default", category=OrthovecDeprecationWarning)


def warn_data(message: str, *, stacklevel: int = 2) -> None:
    """A `DataWarning` pointing at the caller's caller (the user's code, not orthovec's)."""
    warnings.warn(message, DataWarning, stacklevel=stacklevel + 1)


class _ConsoleHandler(logging.Handler):
    """One plain line per record on a rich console: warnings marked, data never read as markup."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            style = "yellow" if record.levelno >= logging.WARNING else None
            prefix = "Warning: " if record.levelno >= logging.WARNING else ""
            self.console.print(prefix + text, style=style, markup=False, highlight=False)
        except Exception:  # a broken pipe must not turn a log line into a crash
            self.handleError(record)


def attach_cli_handler(console: Console, *, level: int = logging.INFO) -> None:
    """Show orthovec's log records and warnings on `console`, once per process.

    Warnings are routed through logging (`logging.captureWarnings`) so they print in the same
    place and style as the messages around them.
    """
    root = logging.getLogger(ROOT)
    if any(isinstance(handler, _ConsoleHandler) for handler in root.handlers):
        return
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    logging.captureWarnings(True)
    captured = logging.getLogger("py.warnings")
    captured.addHandler(_WarningHandler(handler))
    captured.propagate = False


class _WarningHandler(logging.Handler):
    """Python's formatted warning ("file:line: Category: text\\n  source") reduced to its text."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip().splitlines()[0]
        _, _, text = message.partition("Warning: ")
        record.msg, record.args = (text or message), None
        self.target.handle(record)
