"""Gene-vector stores: one interface over Qdrant Edge (embedded default) and a Qdrant server.

Both engines hold one collection per model (vector widths differ between models) with species as a
tenant keyword index, and use the same deterministic point IDs, so loading the same genes twice
overwrites instead of duplicating. Everything above this package (indexer, queries, the API) talks
to `GeneStore` only, which is what makes "embedded or server" a matter of passing a URL.

Modules, as qdrant-client splits its client: `base` (the protocol, point IDs, payloads), `edge`
(the embedded backend), `server` (qdrant-client), `gene_tables` (the read-only reader used where
the embedded store cannot be opened), `backends` (which one a caller gets), `serving` (where a
running server answers), `load` (putting an atlas's genes into a store).
"""

from orthovec.lookup.store.backends import describe, open_store
from orthovec.lookup.store.base import (
    EXACT_SEARCH_MAX_POINTS,
    HNSW_EF,
    GeneStore,
    StoredGene,
    embedding_matrix,
    gene_keys,
    point_id,
    use_exact,
)
from orthovec.lookup.store.edge import EDGE_WAL_BYTES, READ_WAIT_S, WRITE_WAIT_S, EdgeStore
from orthovec.lookup.store.gene_tables import GeneTableStore
from orthovec.lookup.store.server import ServerStore
from orthovec.lookup.store.serving import ServingRecord, serving, serving_record, serving_url

__all__ = [
    "EDGE_WAL_BYTES",
    "EXACT_SEARCH_MAX_POINTS",
    "HNSW_EF",
    "READ_WAIT_S",
    "WRITE_WAIT_S",
    "EdgeStore",
    "GeneStore",
    "GeneTableStore",
    "ServerStore",
    "ServingRecord",
    "StoredGene",
    "describe",
    "embedding_matrix",
    "gene_keys",
    "open_store",
    "point_id",
    "serving",
    "serving_record",
    "serving_url",
    "use_exact",
]
