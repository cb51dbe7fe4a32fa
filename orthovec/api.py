"""The public Python API: the same work as the command line, one function per verb.

    import orthovec as ov
    ov.index_proteome("human.fasta.gz", "human", atlas="atlas", weights="esm2_t33_650M_UR50D.pt")
    ov.align_species("human", "mouse", atlas="atlas")
    ov.map_species(["human", "mouse"], atlas="atlas")
    hits = ov.query("TP53", "human", to=["mouse"], atlas="atlas").hits
    mapping = ov.read_mapping("atlas", "human", "mouse")  # a pyarrow Table

Each function takes plain values (paths as str or Path), states the files it writes, and raises
`orthovec.UserError` (or one of its kinds) for anything the caller can fix. Heavy libraries load
only when a function runs, so `import orthovec` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orthovec.schemas.atlas import Atlas, resolve_atlas

if TYPE_CHECKING:
    import anndata as ad
    import pyarrow as pa

    from orthovec.indexer.pipeline import IndexResult
    from orthovec.integrate.run import IntegrateConfig
    from orthovec.lookup.homology.mapping import MappingParams, PairSummary
    from orthovec.schemas.api import HomologsResponse

PathLike = str | os.PathLike[str]


def _atlas(atlas: PathLike | Atlas | None) -> Atlas:
    return atlas if isinstance(atlas, Atlas) else Atlas(resolve_atlas(atlas))


def index_proteome(
    fasta: PathLike,
    species: str,
    *,
    atlas: PathLike | Atlas | None = None,
    model: str | None = None,
    weights: PathLike | None = None,
    embed: bool = True,
    pooling: Literal["mean", "max", "canonical"] = "mean",
    layer: int | None = None,
    long_seqs: Literal["window", "truncate"] = "window",
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    device: str = "auto",
    taxid: int | None = None,
    gene_map: PathLike | None = None,
    unresolved: Literal["report", "self"] = "report",
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
) -> IndexResult:
    """Embed one proteome FASTA (plain or gzip) with ESM-2 and store one vector per gene.

    Writes `ATLAS/species/<species>/{proteins.parquet, protein_embeddings/<model>.parquet,
    genes/<model>.parquet, index_report.json}` and resumable chunks under `ATLAS/cache/`, then loads
    the gene vectors into the atlas's embedded Qdrant store (`ATLAS/qdrant/<model>/`, or the server
    at `qdrant_url`). Once the species is complete it also builds its MMseqs2 search database
    (`ATLAS/species/<species>/mmseqs/`, kept while the proteins are unchanged) for `align_species`.
    `embed=False` registers the proteins for alignment only (no model, no weights, no store); a
    later call with weights adds the embeddings. Resumes a killed run; a failed run leaves the
    species as it was. Progress goes to the `orthovec.indexer` logger. Returns the run's report
    (genes, proteins, records skipped by reason, embedding throughput, paths written).

    Parameters
    ----------
    fasta
        The proteome: UniProt, Ensembl or NCBI headers, plain or gzip.
    species
        The name the species goes by everywhere else (letters, digits, `_`, `-`, `.`).
    atlas
        The atlas directory (default: `$ORTHOVEC_ATLAS`, else `./orthovec-atlas`).
    model
        ESM-2 model name (default: the architecture of `weights`, else `esm2_t33_650M_UR50D`).
    weights
        A fair-esm checkpoint file (default: the model's file in the torch hub cache).
    embed
        False registers the proteins for alignment only.
    pooling
        How isoforms become one gene vector: mean, max, or the canonical isoform's.
    layer
        The representation layer (default: the last).
    long_seqs
        Sequences over 1022 residues: average overlapping windows, or keep the first 1022.
    precision
        auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16.
    device
        auto, cpu or cuda.
    taxid
        NCBI taxonomy id (default: read from the `OX=` headers).
    gene_map
        A TSV `protein_id, gene_id[, symbol]` for headers that carry no gene.
    unresolved
        Proteins without a gene: report and skip them, or keep each as its own gene.
    qdrant_url
        A Qdrant server to load into instead of the embedded store.
    qdrant_api_key
        That server's API key.
    """
    from orthovec.indexer.pipeline import IndexConfig
    from orthovec.indexing import index_proteome as run_index

    config = IndexConfig(
        fasta=Path(fasta),
        species=species,
        atlas=_atlas(atlas),
        model=model,
        weights=Path(weights) if weights is not None else None,
        embed=embed,
        taxid=taxid,
        pooling=pooling,
        device=device,
        precision=precision,
        long_seqs=long_seqs,
        layer=layer,
        gene_map=Path(gene_map) if gene_map is not None else None,
        unresolved=unresolved,
    )
    return run_index(config, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key)


def align_species(
    species_a: str,
    species_b: str,
    *,
    atlas: PathLike | Atlas | None = None,
    threads: int | None = None,
    sensitivity: float | None = None,
) -> Path:
    """All-vs-all MMseqs2 alignment of two indexed species' proteins, reduced to gene pairs.

    Writes (or reuses, when the proteins are unchanged) `ATLAS/alignments/<A>__<B>.parquet` and
    returns its path; `map_species` then uses it as alignment evidence. Each species' MMseqs2
    search database (`ATLAS/species/<species>/mmseqs/`, which `index_proteome` builds) is reused
    by every pair and sequence query, and built here when it is missing.

    Parameters
    ----------
    species_a
        An indexed species (embedded or alignment-only).
    species_b
        Another one.
    atlas
        The atlas directory (default: `$ORTHOVEC_ATLAS`, else `./orthovec-atlas`).
    threads
        MMseqs2 threads (default: every core).
    sensitivity
        None (default): the adaptive search, a fast MMseqs2 pass and a second one at `-s 5.7` only
        for proteins without a confident best hit (small proteomes get cheaper searches: every pair
        aligned when their residues multiply to at most 2·10¹⁰, else one exhaustive pass up to 2,000
        distinct sequences a side). A number from 1 to 7.5: the exhaustive search
        at that MMseqs2 `-s` (5.7 is MMseqs2's default). The table's provenance says which ran.
    """
    from orthovec.lookup.homology.align import align_species as run_align

    return run_align(_atlas(atlas), species_a, species_b, threads=threads, sensitivity=sensitivity)


def map_species(
    species: Sequence[str],
    *,
    atlas: PathLike | Atlas | None = None,
    model: str | None = None,
    params: MappingParams | None = None,
    out: PathLike | None = None,
) -> list[PairSummary]:
    """Mapping tables for every pair of `species` (top-k both ways, RBH, one-to-one, homology groups).

    Writes `ATLAS/mappings/<model>/<A>__<B>.parquet` per pair (or `out` for two species), plus a
    groups table for three or more species. `params` (`orthovec.lookup.homology.mapping.MappingParams`)
    chooses the evidence (embedding, alignment, fused), metric, k and thresholds. Returns one
    summary per pair (counts, evidence used, path).

    Parameters
    ----------
    species
        Two or more indexed species; every pair is mapped.
    atlas
        The atlas directory (default: `$ORTHOVEC_ATLAS`, else `./orthovec-atlas`).
    model
        The model whose gene vectors to use, when the atlas holds several.
    params
        Evidence, metric, k, margin and floors (`MappingParams()`'s defaults are `orthovec map`'s).
    out
        Where to write the table of a single pair instead of the atlas.
    """
    from orthovec.lookup.homology.mapping import MappingParams
    from orthovec.lookup.homology.mapping import map_species as run_map

    return run_map(_atlas(atlas), list(species), model, params or MappingParams(), Path(out) if out else None)


def query(
    gene: str,
    from_species: str,
    *,
    to: Sequence[str] | None = None,
    k: int = 10,
    evidence: Literal["auto", "embedding", "alignment", "fused"] = "auto",
    atlas: PathLike | Atlas | None = None,
    model: str | None = None,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
) -> HomologsResponse:
    """Homolog candidates of one gene (symbol or ID, any case) in each target species (default: all others).

    The same answer as `orthovec query` and `GET /homologs`: per target species the top `k`
    candidates from the mapping table, the MMseqs2 alignments and the embedding neighbours, in
    the evidence order of `orthovec map` (`evidence`; auto: the best the atlas holds). Each row
    (`answer.hits`, `orthovec.schemas.api.Homolog`) says which evidence it has and whether `map`
    calls it one-to-one; `answer.targets` says how each species was searched, with a note where
    nothing clears the E-value floor. Reads the atlas (or asks the `orthovec serve` serving it);
    writes nothing.

    Parameters
    ----------
    gene
        A gene symbol or ID of `from_species`, any case.
    from_species
        The species the gene belongs to.
    to
        Target species (default: every other species of the atlas).
    k
        Candidates per target species.
    evidence
        Which evidence ranks the candidates: auto, embedding, alignment or fused.
    atlas
        The atlas directory (default: `$ORTHOVEC_ATLAS`, else `./orthovec-atlas`).
    model
        The model whose vectors to search, when the atlas holds several.
    qdrant_url
        A Qdrant server holding the atlas's vectors, instead of the embedded store.
    qdrant_api_key
        That server's API key.
    """
    from orthovec.lookup.homologs import query_atlas

    return query_atlas(
        _atlas(atlas),
        gene,
        from_species,
        to=to,
        k=k,
        evidence=evidence,
        model=model,
        qdrant_url=qdrant_url,
        qdrant_api_key=qdrant_api_key,
    )


def read_mapping(
    atlas_or_path: PathLike | Atlas,
    species_a: str | None = None,
    species_b: str | None = None,
    *,
    model: str | None = None,
) -> pa.Table:
    """A mapping table as a pyarrow Table (`.to_pandas()` / `polars.from_arrow` for either), validated.

    Pass the file, or an atlas and two species (and `model` when the atlas holds several). Reads
    the table; writes nothing.

    Parameters
    ----------
    atlas_or_path
        A mapping Parquet file, or an atlas directory.
    species_a
        With an atlas: the mapping's left species.
    species_b
        With an atlas: its right species.
    model
        The model of the mapping, when the atlas holds several.
    """
    from orthovec.schemas.tables import MAPPING, read_table

    if species_a is None:
        path = atlas_or_path.root if isinstance(atlas_or_path, Atlas) else Path(atlas_or_path)
        return read_table(path, MAPPING)
    if species_b is None:
        from orthovec.schemas.errors import Invalid

        raise Invalid("read_mapping: give both species (or a mapping file).")
    from orthovec.lookup.homology.mapping import choose_mapping_model

    atlas = _atlas(atlas_or_path)
    chosen = choose_mapping_model(atlas, [species_a, species_b], model)
    return read_table(atlas.mapping(chosen, species_a, species_b), MAPPING)


def integrate_species(
    adatas: Mapping[str, ad.AnnData | PathLike],
    mappings: Sequence[PathLike],
    out: PathLike,
    *,
    config: IntegrateConfig | None = None,
) -> ad.AnnData:
    """One shared AnnData for several species' single-cell data, joined through mapping tables.

    `adatas` maps species to AnnData (raw counts) or .h5ad paths; `mappings` are MAPPING Parquet
    files, one multi-species homology-groups table, or `"symbols"` for the upper-cased-symbol
    baseline (asked for by name). Writes into `out` (which may not hold an input): `shared.h5ad`,
    `metrics.json`, cell-type correspondence, conserved markers, gene conservation tables and
    figures. The result records the mapping files, features and correction in `uns['orthovec']`.
    Progress goes to the `orthovec.integrate` logger; questionable input (non-integer counts,
    duplicate gene names) is a `DataWarning`.

    Parameters
    ----------
    adatas
        Species name to AnnData (raw counts) or `.h5ad` path, one per species.
    mappings
        Mapping tables joining the species (one per pair with the reference species), one
        multi-species groups table, or `"symbols"`.
    out
        The output directory, replaced as a whole; it may not hold an input.
    config
        Features, correction, reference species and labels (`IntegrateConfig()`'s defaults are
        `orthovec integrate`'s).
    """
    import anndata as ad

    from orthovec.integrate.inputs import read_adata
    from orthovec.integrate.run import IntegrateConfig
    from orthovec.integrate.run import integrate_species as run_integrate

    paths = [Path(item) for item in adatas.values() if not isinstance(item, ad.AnnData)]
    data = {name: item if isinstance(item, ad.AnnData) else read_adata(Path(item)) for name, item in adatas.items()}
    shared, _, _ = run_integrate(
        data, [str(m) for m in mappings], Path(out), config or IntegrateConfig(), input_paths=paths
    )
    return shared
