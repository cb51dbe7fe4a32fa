"""Progress of long work that people can see both at a terminal and in a batch log.

A rich bar redraws in place, which is right at a terminal and invisible (or garbage) in `nohup`
output and SLURM logs. There, one plain line every `interval_s` seconds (and one at the end) says
how far the work is and how fast it goes, so a stuck or slow job can be told from a working one.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


class WorkProgress:
    """One long step with a known total: `advance(n, **counts)` as work completes."""

    def __init__(self, label: str, total: int, unit: str, console: Console, *, interval_s: float = 30.0) -> None:
        self.label, self.total, self.unit, self.console, self.interval_s = label, total, unit, console, interval_s
        self.done = 0
        self.counts: dict[str, int] = {}
        self._bar: Progress | None = None
        self._task: Any = None
        self._started = self._last_line = 0.0

    def __enter__(self) -> WorkProgress:
        self._started = self._last_line = time.monotonic()
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}", markup=False),  # the label is data (a species name), not markup
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}", style="cyan"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def advance(self, amount: int, **counts: int) -> None:
        self.done += amount
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self._rate())
        elif time.monotonic() - self._last_line >= self.interval_s:
            self._print_line()

    def _rate(self) -> str:
        elapsed = time.monotonic() - self._started
        if elapsed <= 0:
            return ""
        parts = [f"{value / elapsed:,.1f} {name}/s" for name, value in self.counts.items()]
        return "  ".join([*parts, f"{self.done / elapsed:,.0f} {self.unit}/s"])

    def _print_line(self) -> None:
        self._last_line = time.monotonic()
        share = self.done / self.total if self.total else 1.0
        counts = "".join(f", {value:,} {name}" for name, value in self.counts.items())
        self.console.print(
            f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({share:.0%}){counts}, {self._rate()}",
            highlight=False,
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)
        elif kind is None and self.total:
            self._print_line()
