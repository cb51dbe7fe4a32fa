"""The numeric parameters users set, each with one rule, shared by every front end.

A value reaches the library from a command-line option, a manifest key or an HTTP field; all
three check it here (`check`), so `margin = nan` is refused in a manifest exactly as
`--margin nan` is on the command line and `margin=NaN` over HTTP. A rule refuses NaN always,
infinity unless it says otherwise, booleans (Python's `True == 1`), and anything outside its
bounds, with an `Invalid` that names the parameter, the value and the allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orthovec.schemas.errors import Invalid


@dataclass(frozen=True)
class NumberRule:
    """An int or float parameter: `low <= value <= high` (either bound may be open or absent)."""

    name: str
    kind: type[int] | type[float]
    what: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    allow_inf: bool = False

    def allowed(self) -> str:
        """The range in words, for errors and --help: "a number >= 0, or inf"."""
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {_show(self.low)}")
        if self.high is not None:
            bounds.append(f"<= {_show(self.high)}")
        text = ("an integer " if self.kind is int else "a number ") + " and ".join(bounds)
        return text.strip() + (", or inf" if self.allow_inf else "")

    def check(self, value: object, *, param: str | None = None) -> int | float:
        """`value` as this rule's kind, or `Invalid` naming `param` (default: the rule's name)."""
        name = param or self.name
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected {self.allowed()} ({self.what}).", param=name, value=value)
        if self.kind is int and isinstance(value, float):
            if not value.is_integer():
                raise Invalid(f"expected {self.allowed()} ({self.what}).", param=name, value=value)
            value = int(value)
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not self.allow_inf)):
            raise Invalid(f"expected {self.allowed()} ({self.what}).", param=name, value=value)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high and not (self.allow_inf and value == math.inf)
        if too_low or too_high:
            raise Invalid(f"expected {self.allowed()} ({self.what}).", param=name, value=value)
        return value


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


#: NCBI taxonomy ids are positive and fit a signed 32-bit integer (the largest today is ~3 million).
TAXID_MAX = 2**31 - 1

RULES: dict[str, NumberRule] = {
    rule.name: rule
    for rule in (
        NumberRule("k", int, "hits per gene", low=1, high=1000),
        NumberRule("margin", float, "homology-graph margin, a share of each gene's score range", low=0, high=1),
        NumberRule("min_score", float, "homology-graph minimum score (fused scores reach 2)", low=0, high=2),
        # Filters a mapping table's `score`: cosine, Pearson from -1; CSLS (2 cos - r_a - r_b) from -4; fused to 2.
        NumberRule("table_score", float, "lowest mapping-table score to list", low=-4, high=4),
        NumberRule("max_evalue", float, "one-to-one E-value ceiling", low=0, allow_inf=True),
        NumberRule("csls_k", int, "neighbours for the CSLS metric", low=1, high=1000),
        NumberRule("sensitivity", float, "MMseqs2 prefilter sensitivity -s", low=1, high=7.5),
        NumberRule("threads", int, "CPU threads", low=1, high=4096),
        NumberRule("jobs", int, "steps run at once", low=1, high=4096),
        NumberRule("taxid", int, "NCBI taxonomy id", low=1, high=TAXID_MAX),
        NumberRule("seed", int, "random seed", low=0, high=2**32 - 1),
        NumberRule("layer", int, "representation layer (negative counts from the last)", low=-100, high=100),
        NumberRule("toks_per_batch", int, "tokens per batch", low=64, high=10_000_000),
        NumberRule("chunk_residues", int, "residues per cached embedding chunk", low=1, high=10_000_000_000),
        NumberRule("port", int, "TCP port", low=1, high=65535),
        NumberRule("request_timeout", float, "seconds a client has to send a request", low=0.1, high=86400),
        NumberRule("max_epochs", int, "training epochs", low=1, high=100_000),
        NumberRule("scanvi_epochs", int, "training epochs", low=1, high=100_000),
    )
}


def check_number(name: str, value: object, *, param: str | None = None) -> int | float:
    """`value` checked by the rule named `name` (`RULES[name]`); `param` renames it in the error."""
    return RULES[name].check(value, param=param)
