"""The main job end to end on a small shipped example (`orthovec demo`).

Indexes 150 human and 150 Xenopus tropicalis proteins (orthovec/examples/README.md says where
they come from), aligns them with MMseqs2, maps the two species, scores the one-to-one pairs
against the DIOPT orthologs they were chosen from, and shows a few genes' homologs: everything a
user does with a real proteome, in a minute on a laptop CPU.

With ESM-2 weights (given, or in fair-esm's hub cache) the species are embedded and the mapping
fuses alignment and embedding evidence. Without them the demo takes the alignment-only path and
says so: it never downloads anything, so it runs on a fresh machine with no network.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from orthovec.core.logs import get_logger
from orthovec.indexer.pipeline import IndexConfig
from orthovec.indexing import index_proteome
from orthovec.lookup.homologs import query_atlas
from orthovec.lookup.homology.align import align_species
from orthovec.lookup.homology.evaluate import Evaluation, evaluate
from orthovec.lookup.homology.imported import import_pairs
from orthovec.lookup.homology.mapping import Evidence, MappingParams, PairSummary, map_species
from orthovec.schemas.api import HomologsResponse
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.tables import MAPPING, read_table

EXAMPLES = files("orthovec") / "examples"
HUMAN, FROG = "human", "xenopus_tropicalis"
SPECIES = {HUMAN: "human_demo.fasta.gz", FROG: "xenopus_tropicalis_demo.fasta.gz"}
QUERIES = ("AK2", "ETF1", "EEF1B2")
DEMO_MODEL = "esm2_t6_8M_UR50D"
logger = get_logger("demo")


@dataclass(frozen=True)
class DemoResult:
    model: str | None  # None: alignment only (no weights were given or cached)
    mapping: PairSummary
    agreement: Evaluation  # one-to-one pairs against the DIOPT 7/7 pairs the example was drawn from
    queries: dict[str, HomologsResponse]  # what `orthovec query` answers for each demo gene
    random_weights: bool  # True: embedding scores measure the code, not biology
    looked_for: Path | None  # where weights were looked for when none were given

    @property
    def alignment_only(self) -> bool:
        return self.model is None


def example_fasta(species: str) -> Path:
    """The shipped example proteome of `species` (human or xenopus_tropicalis)."""
    return Path(str(EXAMPLES / SPECIES[species]))


def run_demo(atlas: Atlas, *, weights: Path | None, model: str = DEMO_MODEL, device: str = "auto") -> DemoResult:
    """Index, align, map, score and query the shipped example into `atlas`; each step is logged.

    `weights` None: `model`'s checkpoint from fair-esm's hub cache when it is there, else the
    alignment-only path (nothing is downloaded).
    """
    from orthovec.embedding.model import hub_checkpoint, is_random_checkpoint

    looked_for = None if weights is not None else hub_checkpoint(model)
    checkpoint = weights if weights is not None else (looked_for if looked_for and looked_for.is_file() else None)
    if checkpoint is None:
        logger.info(f"No ESM-2 weights at {looked_for}: indexing for alignment only (no embeddings).")
    step = itertools.count(1)
    chosen: str | None = None
    for species in SPECIES:
        logger.info(f"{next(step)}. index {species}" + ("" if checkpoint else " (proteins only)"))
        config = IndexConfig(
            fasta=example_fasta(species),
            species=species,
            atlas=atlas,
            weights=checkpoint,
            embed=checkpoint is not None,
            device=device,
        )
        chosen = index_proteome(config).model
    logger.info(f"{next(step)}. align {HUMAN} ↔ {FROG} (MMseqs2)")
    align_species(atlas, HUMAN, FROG)
    evidence: Evidence = "fused" if chosen else "alignment"
    logger.info(f"{next(step)}. map {HUMAN} ↔ {FROG} ({evidence} evidence)")
    summary = map_species(atlas, [HUMAN, FROG], chosen, MappingParams(evidence=evidence))[0]
    logger.info(f"{next(step)}. score the one-to-one pairs against DIOPT")
    mapping = read_table(Path(summary.path), MAPPING)
    agreement = evaluate(mapping, import_pairs(Path(str(EXAMPLES / "demo_orthologs.tsv")), HUMAN, FROG))
    logger.info(f"{next(step)}. homologs of {', '.join(QUERIES)} in {FROG}")
    queries = {gene: query_atlas(atlas, gene, HUMAN, to=[FROG], k=3) for gene in QUERIES}
    random_weights = checkpoint is not None and is_random_checkpoint(checkpoint)
    return DemoResult(chosen, summary, agreement, queries, random_weights, looked_for)
