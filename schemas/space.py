"""The embedding space: what must be equal for two gene vectors to be comparable.

Two vectors are only comparable when the same weights (by sha256), layer, long-sequence rule,
isoform pooling and precision made them; the model name alone says none of that. Every gene table
carries its space in provenance and every stored point its space id in the payload, and each step
that combines vectors (map, load, query, serve) refuses to mix spaces, naming both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orthovec.schemas.errors import Invalid

PROVENANCE_FIELD = "embedding_space"
#: Store payload key holding `EmbeddingSpace.id`.
PAYLOAD_FIELD = "space"


@dataclass(frozen=True)
class EmbeddingSpace:
    model: str
    weights_sha256: str
    layer: int
    long_seqs: str
    pooling: str
    precision: str

    @property
    def id(self) -> str:
        """Readable and exact: every field, the weights by their first 16 hex digits."""
        return (
            f"{self.model}/w{self.weights_sha256[:16]}/L{self.layer}/{self.long_seqs}/{self.pooling}/{self.precision}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id}

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, Any]) -> EmbeddingSpace | None:
        """The space a gene table declares; tables written before spaces existed give theirs from
        the same provenance keys, so older atlases are checked too. None when it cannot be known."""
        source = provenance.get(PROVENANCE_FIELD) or provenance
        try:
            return cls(
                model=str(source["model"]),
                weights_sha256=str(source["weights_sha256"]),
                layer=int(source["layer"]),
                long_seqs=str(source.get("long_seqs", "window")),
                pooling=str(source.get("pooling", "mean")),
                precision=str(source.get("precision", "fp32")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def space_of_genes(path: Path) -> EmbeddingSpace | None:
    """The embedding space of a GENES Parquet file."""
    from orthovec.schemas.tables import read_provenance

    return EmbeddingSpace.from_provenance(read_provenance(path))


def require_one_space(spaces: Mapping[str, EmbeddingSpace | None], what: str) -> EmbeddingSpace | None:
    """The one space all `spaces` (keyed by a label such as the species) share, or Invalid naming two that differ.

    Sides whose space is unknown (None) are not compared: there is nothing to compare them by.
    """
    known = [(label, space) for label, space in spaces.items() if space is not None]
    for label, space in known[1:]:
        first_label, first = known[0]
        if space != first:
            differ = [
                f"{name} {getattr(first, name)!s:.16} vs {getattr(space, name)!s:.16}"
                for name in ("model", "weights_sha256", "layer", "long_seqs", "pooling", "precision")
                if getattr(first, name) != getattr(space, name)
            ]
            raise Invalid(
                f"{what}: {first_label} and {label} are in different embedding spaces ({'; '.join(differ)}), "
                f"so their vectors are not comparable. {first_label}: {first.id}; {label}: {space.id}. "
                "Index both with the same weights, layer, long-sequence rule, pooling and precision."
            )
    return known[0][1] if known else None


def require_one_space_id(space_ids: Mapping[str, str], what: str) -> None:
    """Like `require_one_space` for a store, which knows each point's space id only."""
    distinct = sorted(set(space_ids.values()))
    if len(distinct) > 1:
        sides = [f"{', '.join(sorted(k for k, v in space_ids.items() if v == s))} ({s})" for s in distinct]
        raise Invalid(
            f"{what} mixes embedding spaces: {' vs '.join(sides)}; their vectors are not comparable. "
            "Re-index the species with one setting (weights, layer, long-sequence rule, pooling, precision)."
        )
