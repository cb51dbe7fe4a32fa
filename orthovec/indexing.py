"""Index a proteome into an atlas and its vector store: the indexer's pipeline with the lookup stage's store.

The one place the two stages meet for indexing, so neither imports the other: the indexer asks
for a `GeneSink`, and this module hands it the store (embedded, or a Qdrant server), then builds
the species' search database from the proteins it committed.
"""

from __future__ import annotations

from orthovec.indexer.pipeline import IndexConfig, IndexResult, ProgressFactory, index_species


def index_proteome(
    config: IndexConfig,
    progress: ProgressFactory | None = None,
    *,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
    search_database: bool = True,
) -> IndexResult:
    """Index (or resume) one proteome: ATLAS/species/<name>/ tables, then its genes into the store.

    Writes proteins.parquet and index_report.json under ATLAS/species/<name>/; with embedding on
    (the default) also protein_embeddings/<model>.parquet and genes/<model>.parquet, embedding
    chunks under ATLAS/cache/, and the gene vectors into the atlas's embedded Qdrant store (or the
    server at `qdrant_url`). Alignment only (`config.embed` False) touches no model and no store.
    Once the species is complete, `search_database` builds (or keeps, when its sequences are
    unchanged) its MMseqs2 search database under ATLAS/species/<name>/mmseqs/; a build leaves that
    to a step of its own. A run that fails or is killed leaves the species as it was.
    """
    from orthovec.lookup.store.load import StoreSink

    sink = StoreSink(config.atlas, qdrant_url, qdrant_api_key) if config.embed else None
    result = index_species(config, sink, progress)
    if result.complete and search_database:
        from orthovec.lookup.homology.databases import ensure_database

        result.paths["search_database"] = str(ensure_database(config.atlas, config.species))
    return result
