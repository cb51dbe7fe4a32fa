"""`orthovec index`: proteome FASTA → proteins → embeddings → gene vectors → Parquet + Qdrant.

Resumability rests on one idea: the embedding work is cut into *content-addressed chunks*.
Distinct sequences not yet in the cache are sorted by (length, hash) and cut greedily under a
residue budget; a chunk's file name is the digest of its member hashes. Removing whole finished
chunks from a length-sorted list leaves the greedy cut of the rest unchanged (every later
sequence is at least as long as the one that closed a chunk), so a run killed at any moment and
restarted plans exactly the chunks it had not finished, embeds them with the same batches, and
produces bit-identical output. Every file is written atomically (temp + rename), so a kill never
leaves half a file that a later run would trust. `--shard i/N` takes the chunks whose digest falls
in bucket i; any run that finds every chunk present assembles the species.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from orthovec.indexer.embed import Encoder, LongSeqs, Precision
from orthovec.indexer.memory import DEFAULT_SLACK_BYTES, MemoryReleaser
from orthovec.indexer.model import load_model
from orthovec.indexer.pool import pool_genes
from orthovec.indexer.settings import CHUNK_RESIDUES, Pooling
from orthovec.indexer.proteome import ReadReport, Unresolved, read_proteome
from orthovec.schemas.atlas import Atlas, check_name
from orthovec.schemas.errors import UserError
from orthovec.schemas.tables import GENES, PROTEIN_EMBEDDINGS, PROTEINS, read_table, vectors_column, write_table

from orthovec import __version__

DEFAULT_MODEL = "esm2_t33_650M_UR50D"


@dataclass(frozen=True)
class IndexConfig:
    """Everything `orthovec index` needs, built once from CLI options and passed down."""

    fasta: Path
    species: str
    atlas: Atlas
    model: str | None = None  # None: what the --weights checkpoint is, else the 650M model
    weights: Path | None = None
    taxid: int | None = None
    pooling: Pooling = "mean"
    device: str = "auto"
    toks_per_batch: int = 4096
    long_seqs: LongSeqs = "window"
    precision: Precision = "auto"
    layer: int | None = None
    shard: tuple[int, int] | None = None
    gene_map: Path | None = None
    unresolved: Unresolved = "report"
    qdrant_url: str | None = None
    chunk_residues: int = CHUNK_RESIDUES
    memory_slack_bytes: int = DEFAULT_SLACK_BYTES  # RSS growth after which freed memory is trimmed

    def __post_init__(self) -> None:
        check_name("species", self.species)
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise UserError(f"--shard {i}/{n}: expected I/N with 0 <= I < N (for example 0/4).")


@dataclass
class IndexResult:
    """What a run did, for the summary and `index_report.json`."""

    species: str
    model: str
    complete: bool
    read: ReadReport
    n_unique_sequences: int = 0
    n_cached_sequences: int = 0
    n_embedded_sequences: int = 0
    n_residues_embedded: int = 0
    embed_seconds: float = 0.0
    n_genes: int = 0
    chunks_total: int = 0
    chunks_missing: int = 0
    paths: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        result: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        result["read"] = self.read.to_dict()
        return result


@dataclass(frozen=True)
class Chunk:
    digest: str
    seq_hashes: tuple[str, ...]
    residues: int


def plan_chunks(pending: dict[str, str], chunk_residues: int) -> list[Chunk]:
    """Greedy cut of the length-sorted pending sequences (see the module docstring for why)."""
    ordered = sorted(pending, key=lambda h: (len(pending[h]), h))
    chunks: list[Chunk] = []
    members: list[str] = []
    residues = 0
    for seq_hash in ordered:
        length = len(pending[seq_hash])
        if members and residues + length > chunk_residues:
            chunks.append(_chunk(members, residues))
            members, residues = [], 0
        members.append(seq_hash)
        residues += length
    if members:
        chunks.append(_chunk(members, residues))
    return chunks


def _chunk(members: list[str], residues: int) -> Chunk:
    digest = hashlib.sha256("\n".join(members).encode()).hexdigest()[:24]
    return Chunk(digest, tuple(members), residues)


def in_shard(chunk: Chunk, shard: tuple[int, int] | None) -> bool:
    return shard is None or int(chunk.digest, 16) % shard[1] == shard[0]


class EmbeddingCache:
    """Chunk files of (seq_hash, length, embedding) for one model setup, shared by all species."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def chunk_path(self, chunk: Chunk) -> Path:
        return self.directory / f"chunk-{chunk.digest}.parquet"

    def cached_hashes(self) -> set[str]:
        hashes: set[str] = set()
        for path in sorted(self.directory.glob("chunk-*.parquet")):
            hashes.update(pq.read_table(path, columns=["seq_hash"]).column("seq_hash").to_pylist())
        return hashes

    def write(self, chunk: Chunk, lengths: list[int], vectors: np.ndarray, provenance: dict[str, object]) -> None:
        table = pa.table(
            {
                "seq_hash": pa.array(chunk.seq_hashes),
                "length": pa.array(lengths, pa.int32()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1]
                ),
            }
        )
        write_table(table, self.chunk_path(chunk), PROTEIN_EMBEDDINGS, provenance)

    def lookup(self, wanted: list[str]) -> np.ndarray:
        """(len(wanted), dim) float32 matrix, row i the vector of `wanted[i]`.

        Filled chunk by chunk into one preallocated matrix: memory is the output plus one chunk.
        """
        row_of = {seq_hash: row for row, seq_hash in enumerate(wanted)}
        matrix: np.ndarray | None = None
        found = np.zeros(len(wanted), dtype=bool)
        for path in sorted(self.directory.glob("chunk-*.parquet")):
            hashes = pq.read_table(path, columns=["seq_hash"]).column("seq_hash").to_pylist()
            pairs = [(i, row_of[h]) for i, h in enumerate(hashes) if h in row_of and not found[row_of[h]]]
            if not pairs:
                continue
            column = read_table(path, PROTEIN_EMBEDDINGS).column("embedding").combine_chunks()
            vectors = column.values.to_numpy().reshape(-1, column.type.list_size)
            if matrix is None:
                matrix = np.empty((len(wanted), vectors.shape[1]), dtype=np.float32)
            source, target = (np.array(side) for side in zip(*pairs, strict=True))
            matrix[target] = vectors[source]
            found[target] = True
        if matrix is None or not found.all():
            raise UserError(
                f"{self.directory}: {int((~found).sum())} embedded sequences are missing from the cache "
                "(was it changed while indexing?); run the same `orthovec index` command again to embed them."
            )
        return matrix


ProgressFactory = Callable[[int, int], Callable[[int, int], None]]
"""Given (proteins, residues) to embed, returns a callback advanced by (proteins, residues) done."""


def index_proteome(
    config: IndexConfig,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> IndexResult:
    """Run (or resume) the whole indexing of one proteome; returns what happened."""
    atlas = config.atlas
    proteins, report = read_proteome(
        config.fasta,
        config.species,
        taxid=config.taxid,
        gene_map=config.gene_map,
        unresolved=config.unresolved,
    )
    for line in report.summary_lines():
        log(line)
    write_table(
        proteins,
        atlas.proteins(config.species),
        PROTEINS,
        {"fasta": str(config.fasta), "orthovec": __version__},
    )

    requested = config.model or (None if config.weights else DEFAULT_MODEL)
    loaded = load_model(requested, config.weights, config.device)
    model = loaded.name
    encoder = Encoder(
        loaded,
        layer=config.layer,
        toks_per_batch=config.toks_per_batch,
        long_seqs=config.long_seqs,
        precision=config.precision,
    )
    precision = encoder.precision
    cache_key = f"{model}-L{encoder.layer}-{config.long_seqs}-{precision}-w{loaded.weights_sha256[:12]}"
    cache = EmbeddingCache(atlas.embedding_cache(cache_key))
    provenance: dict[str, object] = {
        "model": model,
        "layer": encoder.layer,
        "long_seqs": config.long_seqs,
        "precision": precision,
        "weights_sha256": loaded.weights_sha256,
        "orthovec": __version__,
    }

    sequences = dict(zip(proteins.column("seq_hash").to_pylist(), proteins.column("sequence").to_pylist(), strict=True))
    cached = cache.cached_hashes() & sequences.keys()
    pending = {h: s for h, s in sequences.items() if h not in cached}
    all_chunks = plan_chunks(pending, config.chunk_residues)
    chunks = [c for c in all_chunks if in_shard(c, config.shard) and not cache.chunk_path(c).exists()]
    result = IndexResult(
        species=config.species,
        model=model,
        complete=False,
        read=report,
        n_unique_sequences=len(sequences),
        n_cached_sequences=len(cached),
    )
    log(
        f"{len(sequences)} distinct sequences: {len(cached)} already embedded, {len(pending)} to embed"
        + (f" ({len(chunks)} chunks in shard {config.shard[0]}/{config.shard[1]})" if config.shard else "")
    )

    advance = progress(sum(len(c.seq_hashes) for c in chunks), sum(c.residues for c in chunks)) if progress else None
    release_memory = MemoryReleaser(config.memory_slack_bytes)

    def after_batch(proteins_done: int, residues_done: int) -> None:
        release_memory()
        if advance is not None:
            advance(proteins_done, residues_done)

    started = time.perf_counter()
    for chunk in chunks:
        chunk_sequences = [pending[h] for h in chunk.seq_hashes]
        vectors = encoder.embed(chunk_sequences, progress=after_batch)
        cache.write(chunk, [len(s) for s in chunk_sequences], vectors, provenance)
        result.n_embedded_sequences += len(chunk_sequences)
        result.n_residues_embedded += chunk.residues
    result.embed_seconds = time.perf_counter() - started

    result.chunks_total = len(all_chunks)
    result.chunks_missing = sum(not cache.chunk_path(c).exists() for c in all_chunks)
    if result.chunks_missing:
        log(
            f"{result.chunks_missing} of {len(all_chunks)} chunks are still waiting for other shards; run "
            "again without --shard (or let the last shard finish) to assemble the species."
        )
        _write_report(atlas, result)
        return result

    _assemble(config, model, proteins, cache, provenance, result)
    result.complete = True
    _write_report(atlas, result)
    return result


def _assemble(
    config: IndexConfig,
    model: str,
    proteins: pa.Table,
    cache: EmbeddingCache,
    provenance: dict[str, object],
    result: IndexResult,
) -> None:
    """Protein and gene tables from the cache, holding each proteome-sized matrix once."""
    from orthovec.lookup.load import load_genes
    from orthovec.lookup.store import describe, open_store

    atlas = config.atlas
    protein_hashes = proteins.column("seq_hash").to_pylist()
    unique_hashes = sorted(set(protein_hashes))
    vectors = cache.lookup(unique_hashes)  # (distinct sequences, dim)
    lengths = dict(zip(protein_hashes, proteins.column("length").to_pylist(), strict=True))
    protein_embeddings = pa.table(
        {
            "seq_hash": pa.array(unique_hashes),
            "length": pa.array([lengths[h] for h in unique_hashes], pa.int32()),
            "embedding": vectors_column(vectors),
        }
    )
    embeddings_path = write_table(
        protein_embeddings,
        atlas.protein_embeddings(config.species, model),
        PROTEIN_EMBEDDINGS,
        provenance,
    )

    row_of = {seq_hash: row for row, seq_hash in enumerate(unique_hashes)}
    protein_rows = np.fromiter((row_of[h] for h in protein_hashes), np.int64, len(protein_hashes))
    genes = pool_genes(proteins, vectors, config.pooling, rows=protein_rows)
    del vectors, protein_embeddings  # before the store load, which needs memory of its own
    gene_provenance = {
        **provenance,
        "pooling": config.pooling,
        "species": config.species,
        "fasta": str(config.fasta),
    }
    genes_path = write_table(genes, atlas.genes(config.species, model), GENES, gene_provenance)
    result.n_genes = genes.num_rows

    store = open_store(atlas, config.qdrant_url)
    try:
        load_genes(store, model, config.species, genes)
    finally:
        store.close()
    result.paths = {
        "proteins": str(atlas.proteins(config.species)),
        "protein_embeddings": str(embeddings_path),
        "genes": str(genes_path),
        "store": describe(store),
    }


def _write_report(atlas: Atlas, result: IndexResult) -> None:
    path = atlas.index_report(result.species)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    tmp.replace(path)
