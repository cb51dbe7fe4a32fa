"""`orthovec index`: proteome FASTA → proteins → embeddings → gene vectors → Parquet + Qdrant.

Resumability rests on one idea: the embedding work is cut into *content-addressed chunks*.
Distinct sequences not yet in the cache are sorted by (length, hash) and cut greedily under a
residue budget; a chunk's file name is the digest of its member hashes. Removing whole finished
chunks from a length-sorted list leaves the greedy cut of the rest unchanged (every later
sequence is at least as long as the one that closed a chunk), so a run killed at any moment and
restarted plans exactly the chunks it had not finished, embeds them with the same batches, and
produces bit-identical output. Every file is written atomically (temp + rename), so a kill never
leaves half a file that a later run would trust. `--shard i/N` takes the chunks whose digest falls
in bucket i.

Committing a species follows one order, so a failed or killed run leaves the old state intact:
take the species lock and check that the store can take this species (no server holds it, same
embedding space) before the first write, so a run that could not commit stops before it has
changed anything; embed; stage the new proteins, protein embeddings and genes in
`species/<name>/.staging/`; mark the report "committing"; load the store under its write lock;
move the staged files into place; mark the report "complete". Exactly one run holds the species lock, so of
several `--shard` runs that find every chunk present, one assembles and the others say who does.

An alignment-only run (`embed=False`) loads no model: it commits the proteins table and the report
under the same lock, and nothing else. The proteins table is replaced only when its content
changes, so a later run with weights adds embeddings beside it without disturbing what was built
on the proteins (alignments, search databases).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from orthovec.core.faults import fault_point
from orthovec.core.files import atomic_write_text, check_free_space
from orthovec.core.locks import FileLock
from orthovec.core.logs import get_logger
from orthovec.core.version import __version__
from orthovec.embedding.encoder import Encoder, LongSeqs, Precision
from orthovec.embedding.model import load_model
from orthovec.indexer.memory import DEFAULT_SLACK_BYTES, MemoryReleaser
from orthovec.indexer.pool import pool_genes
from orthovec.indexer.proteome import ReadReport, read_proteome
from orthovec.indexer.settings import CHUNK_RESIDUES, Pooling, Unresolved
from orthovec.schemas.atlas import Atlas, check_name
from orthovec.schemas.errors import Invalid, Unavailable
from orthovec.schemas.parameters import check_number
from orthovec.schemas.space import PROVENANCE_FIELD, EmbeddingSpace
from orthovec.schemas.tables import GENES, PROTEIN_EMBEDDINGS, PROTEINS, read_table, vectors_column, write_table

DEFAULT_MODEL = "esm2_t33_650M_UR50D"
logger = get_logger("indexer")


@dataclass(frozen=True)
class IndexConfig:
    """Everything `orthovec index` needs, built once from CLI options and passed down."""

    fasta: Path
    species: str
    atlas: Atlas
    model: str | None = None  # None: what the `weights` checkpoint is, else the 650M model
    weights: Path | None = None
    embed: bool = True  # False: register the proteins for alignment only (no model, no vectors)
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
    chunk_residues: int = CHUNK_RESIDUES
    memory_slack_bytes: int = DEFAULT_SLACK_BYTES  # RSS growth after which freed memory is trimmed
    #: Alignment only: an embedding run of these proteins follows (a build), so vectors of an earlier
    #: proteome are about to be replaced and may stay until then.
    embedding_follows: bool = False
    lock_wait_s: float = 0.0  # how long to wait for another run that holds the species (0: refuse at once)

    def __post_init__(self) -> None:
        check_name("species", self.species)
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise Invalid("expected I/N with 0 <= I < N (for example 0/4).", param="shard", value=f"{i}/{n}")
        if not self.embed:
            if self.weights is not None or self.model is not None:
                given = "weights" if self.weights is not None else "model"
                raise Invalid(
                    "alignment-only indexing (embed off) reads no model; leave it out, or turn embedding on.",
                    param=given,
                    value=str(self.weights if self.weights is not None else self.model),
                )
            if self.shard is not None:
                raise Invalid(
                    "a shard is a share of the embedding work, and alignment-only indexing (embed off) has none.",
                    param="shard",
                    value=f"{self.shard[0]}/{self.shard[1]}",
                )
        if self.taxid is not None:
            check_number("taxid", self.taxid)


@dataclass
class IndexResult:
    """What a run did, for the summary and `index_report.json`."""

    species: str
    model: str | None  # None: registered for alignment only, no embeddings
    complete: bool
    read: ReadReport
    state: str = "embedding"  # embedding → committing → complete; "complete" only once everything is in place
    n_unique_sequences: int = 0
    n_cached_sequences: int = 0
    n_embedded_sequences: int = 0
    n_residues_embedded: int = 0
    embed_seconds: float = 0.0
    n_genes: int = 0
    chunks_total: int = 0
    chunks_missing: int = 0
    paths: dict[str, str] = field(default_factory=dict)
    embedding_space: dict[str, object] = field(default_factory=dict)
    input_sha256: str = ""  # of the kept proteins and the space: what a finished assembly was built from
    proteins_sha256: str = ""  # of the proteins table's content (not its bytes): kept when unchanged
    assembled_by: str = ""  # a shard run that left assembly to another: who that is

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
            try:
                hashes.update(read_table(path, PROTEIN_EMBEDDINGS, ["seq_hash"]).column("seq_hash").to_pylist())
            except Invalid as error:  # chunks are written atomically, so only the disk or a person breaks one
                raise Invalid(f"{error} It is a cache chunk: delete it and run again to embed it anew.") from error
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
            hashes = read_table(path, PROTEIN_EMBEDDINGS, ["seq_hash"]).column("seq_hash").to_pylist()
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
            raise Invalid(
                f"{self.directory}: {int((~found).sum())} embedded sequences are missing from the cache "
                "(was it changed while indexing?); run the same `orthovec index` command again to embed them."
            )
        return matrix


ProgressFactory = Callable[[int, int], Callable[[int, int], None]]
"""Given (proteins, residues) to embed, returns a callback advanced by (proteins, residues) done."""

#: Bytes per float32 vector element, and slack for Parquet overhead when estimating disk needs.
_FLOAT_BYTES, _DISK_SLACK = 4, 1.3


class GeneSink(Protocol):
    """Where a species' gene vectors go last (the vector store), handed in so the indexer never imports lookup."""

    def open(self, model: str, species: str, space: EmbeddingSpace) -> None:
        """Check now that `load` could succeed (store writable, same space), before the indexer writes anything."""

    def load(self, model: str, species: str, genes: pa.Table, space: EmbeddingSpace) -> str:
        """Replace the species' vectors in the store with `genes`; returns where they went, for messages."""


def index_species(
    config: IndexConfig,
    sink: GeneSink | None = None,
    progress: ProgressFactory | None = None,
) -> IndexResult:
    """Run (or resume) the indexing of one proteome into the atlas and `sink`; returns what happened.

    Without a sink only the Parquet tables are written (the store is someone else's job). Progress
    and the reader's report go to the `orthovec.indexer` logger.
    """
    atlas = config.atlas
    proteins, report = read_proteome(
        config.fasta,
        config.species,
        taxid=config.taxid,
        gene_map=config.gene_map,
        unresolved=config.unresolved,
    )
    for line in report.summary_lines():
        logger.info(line)
    if not config.embed:
        return _register(config, proteins, report)

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
    space = EmbeddingSpace(model, loaded.weights_sha256, encoder.layer, config.long_seqs, config.pooling, precision)
    species_lock = FileLock(atlas.species_lock(config.species))
    try:
        if config.shard is None:
            # Lock first: a run that cannot commit must stop before it writes or embeds anything.
            _take_species_lock(species_lock, config.species)
            if sink is not None:
                sink.open(model, config.species, space)
        result = _embed(config, encoder, space, report, proteins, progress)
        if result.chunks_missing:
            return result
        if config.shard is not None and not _shard_may_assemble(config, species_lock, sink, space, result):
            return result
        try:
            _assemble(config, proteins, space, sink, result)
        except BaseException:
            shutil.rmtree(atlas.staging(config.species), ignore_errors=True)  # the committed files stay as they were
            raise
        return result
    finally:
        species_lock.release()


def proteins_digest(proteins: pa.Table) -> str:
    """Content hash of a PROTEINS table (every column but the sequence, which `seq_hash` stands for).

    Content, not file bytes: the same proteins written again hash the same, whatever the file's
    provenance says.
    """
    digest = hashlib.sha256()
    for name in PROTEINS.schema().names:
        if name != "sequence":
            digest.update(json.dumps(proteins.column(name).to_pylist()).encode())
    return digest.hexdigest()


def _committed_proteins_digest(atlas: Atlas, species: str) -> str | None:
    """The content hash of the species' committed proteins table, or None when it has none."""
    path = atlas.proteins(species)
    if not path.is_file():
        return None
    columns = [name for name in PROTEINS.schema().names if name != "sequence"]
    return proteins_digest(read_table(path, PROTEINS, columns))


def _register(config: IndexConfig, proteins: pa.Table, report: ReadReport) -> IndexResult:
    """Alignment only: commit the proteins table and the report; no model is read, nothing is embedded.

    Registering the same proteins again changes nothing (a species indexed with weights keeps its
    vectors and its report). New proteins for a species that has vectors are refused: those vectors
    would describe proteins the species no longer has.
    """
    atlas, species = config.atlas, config.species
    result = IndexResult(
        species=species,
        model=None,
        complete=False,
        read=report,
        n_genes=report.n_genes,
        proteins_sha256=proteins_digest(proteins),
    )
    lock = FileLock(atlas.species_lock(species))
    _take_species_lock(lock, species, config.lock_wait_s)
    try:
        committed = _committed_proteins_digest(atlas, species)
        result.paths = {"proteins": str(atlas.proteins(species))}
        unchanged = committed == result.proteins_sha256
        if unchanged and atlas.read_index_report(species).get("state") == "complete":
            logger.info(f"{species}: these {report.n_proteins:,} proteins are already registered; nothing changed")
            result.complete, result.state = True, "complete"
            return result
        models = atlas.models_for(species)
        if not unchanged and committed is not None and models and not config.embedding_follows:
            raise Invalid(
                f"{species} already has {', '.join(models)} gene vectors of other proteins than "
                f"{config.fasta}; registering these for alignment only would leave those vectors describing "
                "proteins the species no longer has. Index the new proteome with weights (embedding on), or "
                f"delete {atlas.species_dir(species)} first.",
                param="fasta",
                value=str(config.fasta),
            )
        if not unchanged:
            check_free_space(atlas.species_dir(species), int(proteins.nbytes * _DISK_SLACK), f"the tables of {species}")
            provenance = {"fasta": str(config.fasta), "orthovec": __version__}
            write_table(proteins, atlas.proteins(species), PROTEINS, provenance)
        result.complete, result.state = True, "complete"
        _write_report(atlas, result)
        logger.info(f"{species}: {report.n_proteins:,} proteins registered for alignment (no embeddings)")
        return result
    finally:
        lock.release()


def _embed(
    config: IndexConfig,
    encoder: Encoder,
    space: EmbeddingSpace,
    report: ReadReport,
    proteins: pa.Table,
    progress: ProgressFactory | None,
) -> IndexResult:
    """Embed this run's missing chunks into the shared cache (content-addressed, so safe without a lock)."""
    cache = _cache(config.atlas, space)
    sequences = dict(zip(proteins.column("seq_hash").to_pylist(), proteins.column("sequence").to_pylist(), strict=True))
    cached = cache.cached_hashes() & sequences.keys()
    pending = {h: s for h, s in sequences.items() if h not in cached}
    all_chunks = plan_chunks(pending, config.chunk_residues)
    chunks = [c for c in all_chunks if in_shard(c, config.shard) and not cache.chunk_path(c).exists()]
    result = IndexResult(
        species=config.species,
        model=space.model,
        complete=False,
        read=report,
        n_unique_sequences=len(sequences),
        n_cached_sequences=len(cached),
        embedding_space=space.to_dict(),
        input_sha256=_input_digest(proteins, space),
        proteins_sha256=proteins_digest(proteins),
    )
    logger.info(
        f"{len(sequences)} distinct sequences: {len(cached)} already embedded, {len(pending)} to embed"
        + (f" ({len(chunks)} chunks in shard {config.shard[0]}/{config.shard[1]})" if config.shard else "")
    )
    to_embed = sum(len(c.seq_hashes) for c in chunks)
    check_free_space(
        cache.directory, int(to_embed * encoder.loaded.embed_dim * _FLOAT_BYTES * _DISK_SLACK), "embedding"
    )

    advance = progress(to_embed, sum(c.residues for c in chunks)) if progress else None
    release_memory = MemoryReleaser(config.memory_slack_bytes)

    def after_batch(proteins_done: int, residues_done: int) -> None:
        release_memory()
        if advance is not None:
            advance(proteins_done, residues_done)

    started = time.perf_counter()
    for chunk in chunks:
        chunk_sequences = [pending[h] for h in chunk.seq_hashes]
        vectors = encoder.embed(chunk_sequences, progress=after_batch)
        cache.write(chunk, [len(s) for s in chunk_sequences], vectors, _provenance(space))
        fault_point("after-chunk")
        result.n_embedded_sequences += len(chunk_sequences)
        result.n_residues_embedded += chunk.residues
    result.embed_seconds = time.perf_counter() - started

    result.chunks_total = len(all_chunks)
    result.chunks_missing = sum(not cache.chunk_path(c).exists() for c in all_chunks)
    if result.chunks_missing:
        logger.info(
            f"{result.chunks_missing} of {len(all_chunks)} chunks are still waiting for other shards; the shard "
            "run that finds them all assembles the species (or a run without a shard does)."
        )
    return result


def _cache(atlas: Atlas, space: EmbeddingSpace) -> EmbeddingCache:
    """Chunks are shared by every species embedded in the same space (pooling comes later, so not in the key)."""
    key = f"{space.model}-L{space.layer}-{space.long_seqs}-{space.precision}-w{space.weights_sha256[:12]}"
    return EmbeddingCache(atlas.embedding_cache(key))


def _provenance(space: EmbeddingSpace) -> dict[str, object]:
    return {
        "model": space.model,
        "layer": space.layer,
        "long_seqs": space.long_seqs,
        "precision": space.precision,
        "weights_sha256": space.weights_sha256,
        "orthovec": __version__,
    }


def _take_species_lock(lock: FileLock, species: str, wait_s: float = 0.0) -> None:
    deadline = time.monotonic() + wait_s
    while not lock.acquire():
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not lock.held:
        raise Unavailable(
            f"Another `orthovec index` of {species} is running ({lock.holder() or 'pid unknown'}); one run at a "
            "time commits a species. Wait for it to finish; nothing was changed."
        )


def _shard_may_assemble(
    config: IndexConfig,
    lock: FileLock,
    sink: GeneSink | None,
    space: EmbeddingSpace,
    result: IndexResult,
) -> bool:
    """Exactly one of the shard runs that find every chunk present assembles; the others say who."""
    if not lock.acquire():
        result.assembled_by = lock.holder() or "another run"
        logger.info(f"every chunk is present; {result.assembled_by} is assembling {config.species}")
        return False
    if config.atlas.read_index_report(config.species).get("input_sha256") == result.input_sha256 and _committed(
        config.atlas, config.species, space.model
    ):
        result.assembled_by = "an earlier shard run"
        result.complete, result.state = True, "complete"
        logger.info(f"{config.species} was already assembled from these chunks by another shard run")
        return False
    if sink is not None:
        sink.open(space.model, config.species, space)
    return True


def _committed(atlas: Atlas, species: str, model: str) -> bool:
    return atlas.read_index_report(species).get("state") == "complete" and atlas.genes(species, model).is_file()


def _input_digest(proteins: pa.Table, space: EmbeddingSpace) -> str:
    digest = hashlib.sha256(space.id.encode())
    for name in ("protein_id", "gene_id", "seq_hash"):
        digest.update("\n".join(proteins.column(name).to_pylist()).encode())
    return digest.hexdigest()


def _assemble(
    config: IndexConfig, proteins: pa.Table, space: EmbeddingSpace, sink: GeneSink | None, result: IndexResult
) -> None:
    """Stage the species' tables, load the store, then move the tables into place (see the module docstring)."""
    atlas, species, model = config.atlas, config.species, space.model
    cache, provenance = _cache(atlas, space), _provenance(space)
    staging = atlas.staging(species)
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftovers: we hold the species lock
    protein_hashes = proteins.column("seq_hash").to_pylist()
    unique_hashes = sorted(set(protein_hashes))
    vectors = cache.lookup(unique_hashes)  # (distinct sequences, dim)
    gene_count = len(set(proteins.column("gene_id").to_pylist()))
    needed = (len(unique_hashes) + gene_count) * vectors.shape[1] * _FLOAT_BYTES + proteins.nbytes
    check_free_space(atlas.species_dir(species), int(needed * _DISK_SLACK), f"the tables of {species}")
    lengths = dict(zip(protein_hashes, proteins.column("length").to_pylist(), strict=True))
    protein_embeddings = pa.table(
        {
            "seq_hash": pa.array(unique_hashes),
            "length": pa.array([lengths[h] for h in unique_hashes], pa.int32()),
            "embedding": vectors_column(vectors),
        }
    )
    final = {
        "proteins": atlas.proteins(species),
        "protein_embeddings": atlas.protein_embeddings(species, model),
        "genes": atlas.genes(species, model),
    }
    if _committed_proteins_digest(atlas, species) == result.proteins_sha256:
        del final["proteins"]  # unchanged: what was built on it (alignments, search databases) stays current
    staged = {name: staging / path.relative_to(atlas.species_dir(species)) for name, path in final.items()}
    if "proteins" in staged:
        write_table(proteins, staged["proteins"], PROTEINS, {"fasta": str(config.fasta), "orthovec": __version__})
    write_table(protein_embeddings, staged["protein_embeddings"], PROTEIN_EMBEDDINGS, provenance)

    row_of = {seq_hash: row for row, seq_hash in enumerate(unique_hashes)}
    protein_rows = np.fromiter((row_of[h] for h in protein_hashes), np.int64, len(protein_hashes))
    genes = pool_genes(proteins, vectors, config.pooling, rows=protein_rows)
    del vectors, protein_embeddings  # before the store load, which needs memory of its own
    gene_provenance = {
        **provenance,
        "pooling": config.pooling,
        "species": species,
        "fasta": str(config.fasta),
        # so `query --sequence` finds the checkpoint again; its sha256 is checked on use
        "weights_path": str(config.weights.resolve()) if config.weights else None,
        "proteins_sha256": result.proteins_sha256,  # the proteins these vectors describe (`orthovec species`)
        PROVENANCE_FIELD: space.to_dict(),
    }
    write_table(genes, staged["genes"], GENES, gene_provenance)
    result.n_genes = genes.num_rows
    fault_point("after-stage")

    result.state = "committing"
    _write_report(atlas, result)
    store = sink.load(model, species, genes, space) if sink is not None else "(no store)"
    fault_point("after-store-load")
    for name, path in final.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged[name], path)
    shutil.rmtree(staging, ignore_errors=True)
    result.paths = {"proteins": str(atlas.proteins(species)), **{n: str(p) for n, p in final.items()}, "store": store}
    result.complete, result.state = True, "complete"
    _write_report(atlas, result)


def _write_report(atlas: Atlas, result: IndexResult) -> None:
    atomic_write_text(atlas.index_report(result.species), json.dumps(result.to_dict(), indent=2, default=str))
