"""Score a mapping's one-to-one pairs against a reference (e.g. Ensembl one2one orthologs).

Definitions (as in ../shared/data/README.md for the published ESM-2 15B mapping):
- precision: correct pairs / predicted pairs whose A gene has a reference one-to-one ortholog
  (pairs of genes the reference says nothing one-to-one about are not counted either way);
- recall: correct pairs / reference one-to-one pairs;
- coverage: reference one-to-one A genes that have any predicted pair / all of them.
Genes are matched by ID when the two tables share ID space, else by upper-cased symbol.

The homology graph (pairs with a `relation`) is also scored against every reference ortholog
pair, one2many and many2many included: `graph_precision` = graph pairs that are reference pairs /
graph pairs whose A gene has any reference ortholog, `graph_recall` = reference pairs in the
graph / all reference pairs (null when the mapping has no graph).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow as pa

from orthovec.lookup.homology.imported import import_biomart, import_pairs
from orthovec.schemas.errors import Invalid
from orthovec.schemas.tables import MAPPING, read_table

PairChoice = Literal["auto", "greedy", "optimal", "relation", "rbh", "all"]


@dataclass(frozen=True)
class Evaluation:
    precision: float
    recall: float
    f1: float
    coverage: float
    n_pairs: int
    n_correct: int
    n_evaluable: int
    n_reference: int
    matched_by: str
    pairs: str
    graph_precision: float | None = None
    graph_recall: float | None = None
    graph_pairs: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def predicted_pairs(mapping: pa.Table, choice: PairChoice = "auto") -> tuple[pl.DataFrame, str]:
    """The mapping's one-to-one pairs: greedy for orthovec maps, relation one2one otherwise."""
    rows = pl.from_arrow(mapping)
    assert isinstance(rows, pl.DataFrame)
    if choice == "auto":
        if "is_one2one_greedy" in rows.columns:
            choice = "greedy"
        elif rows["relation"].null_count() < len(rows):
            choice = "relation"
        else:
            choice = "all"
    filters = {
        "greedy": lambda: pl.col("is_one2one_greedy"),
        "optimal": lambda: pl.col("is_one2one_optimal"),
        "relation": lambda: pl.col("relation") == "one2one",
        "rbh": lambda: pl.col("is_rbh"),
        "all": lambda: pl.lit(True),
    }
    try:
        return rows.filter(filters[choice]()), choice
    except pl.exceptions.ColumnNotFoundError as err:
        raise Invalid(f"the mapping has no such column ({err}).", param="pairs", value=choice) from err


def evaluate(mapping: pa.Table, truth: pa.Table, choice: PairChoice = "auto") -> Evaluation:
    predicted, used = predicted_pairs(mapping, choice)
    every_reference = pl.from_arrow(truth)
    assert isinstance(every_reference, pl.DataFrame)
    reference = every_reference.filter(pl.col("relation") == "one2one")
    if reference.is_empty():
        raise Invalid("The reference has no one-to-one pairs to evaluate against.", param="truth")
    # The ID space is judged on every row, so a mapping with no calls scores 0 instead of failing.
    candidates = pl.from_arrow(mapping)
    assert isinstance(candidates, pl.DataFrame)
    by = _matching_key(candidates, reference)
    a, b = f"{by}_a", f"{by}_b"
    ref_pairs = reference.select(
        pl.col(a).str.to_uppercase().alias("a"), pl.col(b).str.to_uppercase().alias("b")
    ).unique()
    pred_pairs = predicted.select(
        pl.col(a).str.to_uppercase().alias("a"), pl.col(b).str.to_uppercase().alias("b")
    ).unique()
    ref_genes = set(ref_pairs["a"].to_list())
    evaluable = pred_pairs.filter(pl.col("a").is_in(ref_genes))
    correct = evaluable.join(ref_pairs, on=["a", "b"], how="inner").height
    precision = correct / evaluable.height if evaluable.height else 0.0
    recall = correct / ref_pairs.height
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    coverage = len(ref_genes & set(pred_pairs["a"].to_list())) / len(ref_genes)
    graph = candidates.filter(pl.col("relation").is_not_null())
    graph_precision, graph_recall = _graph_scores(graph, every_reference, a, b) if graph.height else (None, None)
    return Evaluation(
        precision,
        recall,
        f1,
        coverage,
        pred_pairs.height,
        correct,
        evaluable.height,
        ref_pairs.height,
        by,
        used,
        graph_precision,
        graph_recall,
        graph.height,
    )


def _graph_scores(graph: pl.DataFrame, reference: pl.DataFrame, a: str, b: str) -> tuple[float, float]:
    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(pl.col(a).str.to_uppercase().alias("a"), pl.col(b).str.to_uppercase().alias("b")).unique()

    edges, pairs = keyed(graph), keyed(reference)
    evaluable = edges.filter(pl.col("a").is_in(set(pairs["a"].to_list())))
    found = evaluable.join(pairs, on=["a", "b"], how="inner").height
    return (found / evaluable.height if evaluable.height else 0.0), found / max(pairs.height, 1)


def _matching_key(predicted: pl.DataFrame, reference: pl.DataFrame) -> str:
    """gene_id when IDs overlap more than symbols do, else gene_symbol."""

    def overlap(column: str) -> int:
        left = set(predicted[column].drop_nulls().str.to_uppercase().to_list())
        return len(left & set(reference[column].drop_nulls().str.to_uppercase().to_list()))

    by_id, by_symbol = overlap("gene_id_a"), overlap("gene_symbol_a")
    if max(by_id, by_symbol) == 0:
        raise Invalid(
            "The mapping and the reference share no genes (neither IDs nor symbols of species A); check that "
            "they describe the same species pair in the same order."
        )
    return "gene_id" if by_id >= by_symbol else "gene_symbol"


def read_truth(path: Path, fmt: Literal["biomart", "pairs", "mapping"], species_a: str, species_b: str) -> pa.Table:
    if fmt == "mapping":
        return read_table(path, MAPPING)
    if fmt == "biomart":
        return import_biomart(path, species_a, species_b)
    return import_pairs(path, species_a, species_b)
