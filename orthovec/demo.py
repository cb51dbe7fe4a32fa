"""The main job end to end on a small shipped example (`orthovec demo`).

Indexes 150 human and 150 Xenopus tropicalis proteins (orthovec/examples/README.md says where
they come from), aligns them with MMseqs2, maps the two species on the fused evidence, scores the
one-to-one pairs against the DIOPT orthologs they were chosen from, and runs a few homolog
queries: everything a user does with a real proteome, in a minute on a laptop CPU with the 8M model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from orthovec.embedding.model import is_random_checkpoint
from orthovec.indexer.pipeline import IndexConfig
from orthovec.indexing import index_proteome
from orthovec.lookup.homology.align import align_species
from orthovec.lookup.homology.evaluate import Evaluation, evaluate
from orthovec.lookup.homology.imported import import_pairs
from orthovec.lookup.homology.mapping import MappingParams, PairSummary, map_species
from orthovec.lookup.query import Hit, homologs_of_gene
from orthovec.lookup.store import open_store
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import MAPPING, read_table

EXAMPLES = files("orthovec") / "examples"
FROG = "xenopus_tropicalis"
SPECIES = {"human": "human_demo.fasta.gz", FROG: "xenopus_tropicalis_demo.fasta.gz"}
QUERIES = ("AK2", "ETF1", "EEF1B2")


@dataclass(frozen=True)
class DemoResult:
    model: str
    mapping: PairSummary
    agreement: Evaluation  # one-to-one pairs against the DIOPT 7/7 pairs the example was drawn from
    queries: dict[str, list[Hit]]
    random_weights: bool  # True: the agreement figure measures the code, not biology


def run_demo(
    atlas: Atlas, *, weights: Path | None, model: str, device: str = "auto", log: Callable[[str], None] = print
) -> DemoResult:
    """Index, map, score and query the shipped example into `atlas`; `log` hears each step."""
    for species, filename in SPECIES.items():
        log(f"1. index {species}")
        result = index_proteome(
            IndexConfig(
                fasta=Path(str(EXAMPLES / filename)),
                species=species,
                atlas=atlas,
                model=None if weights else model,
                weights=weights,
                device=device,
            ),
            log=lambda line: log(f"   {line}"),
        )
        model = result.model
    log("2. align human ↔ xenopus_tropicalis (MMseqs2)")
    align_species(atlas, *SPECIES)
    log("3. map human ↔ xenopus_tropicalis (alignment and embedding evidence, fused)")
    summary = map_species(atlas, list(SPECIES), model, MappingParams(evidence="fused"))[0]
    truth = import_pairs(Path(str(EXAMPLES / "demo_orthologs.tsv")), *SPECIES)
    agreement = evaluate(read_table(Path(summary.path), MAPPING), truth)
    store = open_store(atlas, read_only=True)
    try:
        queries = {gene: homologs_of_gene(store, gene, "human", [FROG], k=3, model=model) for gene in QUERIES}
    finally:
        store.close()
    random_weights = weights is not None and is_random_checkpoint(weights)
    return DemoResult(model, summary, agreement, queries, random_weights)
