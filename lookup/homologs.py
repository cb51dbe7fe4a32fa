"""The homolog service: a gene's (or a sequence's) homologs in other species, from every source of
evidence the atlas holds, ranked as `orthovec map` ranks them.

`orthovec query`, `GET /homologs`, `POST /homologs/sequence`, `ov.query` and the lookup page all
call `homologs` (or `homologs_of_sequences`) and show the rows it returns (`schemas.api.Homolog`),
so no front end can tell a different story about the same atlas.

Sources, per target species; each fills its own columns and leaves the others null:
- the mapping table of `orthovec map` (`ATLAS/mappings/<model or mmseqs2>/A__B.parquet`, read in
  either direction): the one-to-one call, relation, group, RBH, fused score, and the alignment and
  embedding evidence of every candidate pair the map kept;
- the alignment table of `orthovec align`, where no mapping table carries the alignment;
- the embedding neighbours in the store (exact top-k by cosine, with rank and RBH);
- for a raw sequence, an MMseqs2 search of the species' proteome.

The evidence order (`evidence`, as `map --evidence`): `fused` puts every aligned pair above every
pair without an alignment (the map's fused score, 1 + BSR for an aligned pair; where no map was
run, aligned pairs by BSR, then the rest by cosine); `alignment` orders by BSR; `embedding` by
cosine; `auto` is the best the atlas holds for the pair (fused, else alignment, else embedding).
Candidates a source has no score for come after those it scores. Ties go to the pair `map` calls
one-to-one, so that pair comes first whenever its evidence is the strongest. A query within its
own species returns paralogs (`is_paralog`), never the gene itself.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from orthovec.core.logs import get_logger
from orthovec.lookup.query import GeneRef, Hit, pick_gene, resolve_gene, search_vectors, unknown_species
from orthovec.lookup.sequence import SequenceEmbedder
from orthovec.lookup.store import GeneStore, open_store
from orthovec.schemas.api import EVIDENCE, Evidence, GeneModel, Homolog, HomologsResponse, TargetSpecies
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Ambiguous, Invalid, NotFound
from orthovec.schemas.parameters import check_number
from orthovec.schemas.tables import ALIGNMENT, MAPPING, PROTEINS, TableSpec, read_provenance, read_table

#: `orthovec map`'s folder of alignment-only tables and its default one-to-one floor
#: (`homology.mapping.ALIGNMENT_MODEL`, `MappingParams.max_evalue`; that module loads torch, which a
#: gene query must not, so the values are repeated here and a test keeps them equal).
ALIGNMENT_TABLES = "mmseqs2"
DEFAULT_MAX_EVALUE = 0.01
#: Evidence orders from the strongest: what `auto` picks from.
STRENGTH = ("fused", "alignment", "embedding")
#: A Homolog's fields that describe the pair, whichever side the query is on.
Row = dict[str, Any]


#: records (name, sequence), species -> per record, its MMseqs2 hits in `species` reduced to genes
#: (rows with gene_id, gene_symbol, bits, bsr, identity, coverage_query, coverage_target, evalue).
SequenceSearch = Callable[[Sequence[tuple[str, str]], str], list[list[Row]]]
#: The columns a sequence search fills (`schemas.tables.SEQUENCE_HITS`, oriented as the query sees them).
SEARCH_FIELDS = ("gene_id", "gene_symbol", "bits", "bsr", "identity", "coverage_query", "coverage_target", "evalue")


def mmseqs_search(atlas: Atlas, *, threads: int | None = None) -> SequenceSearch:
    """The atlas's MMseqs2 search (`homology.search`: `align`'s binary, scoring and gene
    reduction, against each species' database and k-mer index, built on first use)."""

    def search(records: Sequence[tuple[str, str]], species: str) -> list[list[Row]]:
        from orthovec.lookup.homology.search import search_sequences

        found: list[list[Row]] = [[] for _ in records]
        for row in search_sequences(atlas, records, species, threads=threads).to_pylist():
            found[row["query_index"]].append({name: row[name] for name in SEARCH_FIELDS})
        return found

    return search


class DamagedTable(Invalid):
    """An atlas table that cannot be read as its schema says. To a command-line user it is their
    file (the message names it); a server answers 500, since the client did nothing wrong."""


def _finite(value: Any) -> Any:
    """NaN (a score the table has no value for) as None: JSON has no NaN."""
    return None if isinstance(value, float) and math.isnan(value) else value


class AtlasReader:
    """The atlas files a query reads: one gene's rows of a mapping or alignment table, a species'
    genes and proteins, a table's provenance.

    With `cache` (the server), each table is parsed once and kept while its file is unchanged (a
    rerun of `map` or `align` replaces the file atomically, which changes its mtime), with an
    index from gene to rows, so a query costs a dictionary lookup. Without (one command), only the
    rows of the gene are read, skipping row groups whose statistics rule it out.
    """

    def __init__(self, atlas: Atlas, *, cache: bool = False) -> None:
        self.atlas, self.cache = atlas, cache
        self._frames: dict[Path, tuple[tuple[int, int], pl.DataFrame, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Any `Invalid` raised inside, reading an atlas file, is a `DamagedTable`."""
        try:
            yield
        except DamagedTable:
            raise
        except Invalid as error:
            raise DamagedTable(str(error)) from error

    def _frame(self, path: Path, spec: TableSpec) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The parsed table and what was derived from it (row indexes by gene, the gene list)."""
        stat = path.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        cached = self._frames.get(path)
        if cached is None or cached[0] != signature:
            with self.reading():
                frame = pl.from_arrow(read_table(path, spec))
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))  # JSON has no NaN
            cached = (signature, frame, {})
            self._frames[path] = cached
        return cached[1], cached[2]

    def rows(self, path: Path, spec: TableSpec, column: str, value: str) -> list[Row]:
        """The rows of `path` whose `column` holds `value`."""
        if not self.cache:
            with self.reading():
                read_table(path, spec, [column])  # the file's schema tag and the column, checked
                # polars reads the other columns only for the matching rows; pyarrow's filtered read
                # decoded every column of the table (`map` writes one row group): a gene query on the
                # 218k-row human x mouse map took 178 ms, now 37 ms (load 8 on 2 cores).
                try:
                    found = pl.scan_parquet(path).filter(pl.col(column) == value).collect().to_arrow()
                except (pl.exceptions.PolarsError, OSError) as error:
                    raise Invalid(f"{path}: not a readable Parquet file ({error}).") from error
                return spec.validate(found, str(path)).to_pylist()
        with self._lock:
            frame, derived = self._frame(path, spec)
            indexes = derived.setdefault("rows by", {})
            if column not in indexes:
                groups = frame.select(pl.col(column), pl.int_range(pl.len()).alias("row")).group_by(column)
                indexes[column] = {key: np.asarray(rows) for key, rows in groups.agg(pl.col("row")).iter_rows()}
            found = indexes[column].get(value)
        return [] if found is None else frame[found].to_dicts()

    def provenance(self, path: Path) -> dict[str, Any]:
        with self.reading():
            return read_provenance(path)

    def genes(self, species: str) -> list[GeneRef] | None:
        """Every gene of an indexed species (from its proteins), or None when the atlas has no proteins for it."""
        path = self.atlas.proteins(species)
        if not path.is_file():
            return None
        if not self.cache:
            with self.reading():
                frame = pl.from_arrow(read_table(path, PROTEINS, ["gene_id", "gene_symbol"]))
            assert isinstance(frame, pl.DataFrame)
            return _gene_refs(species, frame)
        with self._lock:
            frame, derived = self._frame(path, PROTEINS)
            if "genes" not in derived:
                derived["genes"] = _gene_refs(species, frame)
            return list(derived["genes"])

    def named(self, species: str, name: str) -> list[GeneRef] | None:
        """The genes of `species` whose ID or symbol is `name` in any case; None as `genes`.

        Filtered in the table, not in Python: building a GeneRef for each of 20k genes to find one
        took most of a command-line gene query.
        """
        if self.cache:
            genes = self.genes(species)
            wanted = name.upper()
            return (
                None
                if genes is None
                else [g for g in genes if wanted in (g.gene_id.upper(), (g.gene_symbol or "").upper())]
            )
        path = self.atlas.proteins(species)
        if not path.is_file():
            return None
        with self.reading():
            frame = pl.from_arrow(read_table(path, PROTEINS, ["gene_id", "gene_symbol"]))
        assert isinstance(frame, pl.DataFrame)
        wanted = name.upper()
        matching = frame.filter(
            (pl.col("gene_id").str.to_uppercase() == wanted) | (pl.col("gene_symbol").str.to_uppercase() == wanted)
        )
        return _gene_refs(species, matching)

    def table(self, path: Path, spec: TableSpec) -> pl.DataFrame:
        """A whole table (kept while the file is unchanged, with `cache`)."""
        if not self.cache:
            with self.reading():
                frame = pl.from_arrow(read_table(path, spec))
            assert isinstance(frame, pl.DataFrame)
            return frame
        with self._lock:
            return self._frame(path, spec)[0]


def _gene_refs(species: str, proteins: pl.DataFrame) -> list[GeneRef]:
    """One GeneRef per gene of a PROTEINS table, in its order."""
    unique = proteins.select("gene_id", "gene_symbol").unique("gene_id", keep="first", maintain_order=True)
    return [GeneRef(species, gene_id, symbol) for gene_id, symbol in unique.iter_rows()]


def table_evidence(provenance: dict[str, Any], folder: str) -> str:
    """What an `orthovec map` table was made from: its provenance says (older tables: by folder)."""
    return str(provenance.get("evidence") or ("alignment" if folder == ALIGNMENT_TABLES else "embedding"))


@dataclass(frozen=True)
class MappingTable:
    """One `orthovec map` table of the query's species and a target, and which side the query is on."""

    path: Path
    evidence: str
    query_side: str  # "a" or "b"
    max_evalue: float


@dataclass
class Catalogue:
    """What the atlas and the store hold: species, models and genes, for one query."""

    atlas: Atlas
    store: GeneStore | None
    reader: AtlasReader

    def __post_init__(self) -> None:
        self.store_species = (
            {model: set(self.store.species_counts(model)) for model in self.store.models()} if self.store else {}
        )
        self.atlas_species = {s for s in self.atlas.species_names() if self.atlas.proteins(s).is_file()}

    def species(self) -> set[str]:
        return self.atlas_species.union(*self.store_species.values())

    def check(self, names: Sequence[str]) -> None:
        known = self.species()
        if not known:
            missing = "" if self.atlas.root.is_dir() else " (no such directory)"
            raise NotFound(
                f"The atlas {self.atlas.root}{missing} holds no species"
                + (" and its store no gene vectors" if self.store is not None else "")
                + ": index a proteome with `orthovec index` first."
            )
        for name in names:
            if name not in known:
                raise unknown_species(name, known, f"in {self.atlas.root}")

    def models_of(self, species: str) -> set[str]:
        held = {model for model, names in self.store_species.items() if species in names}
        return held | set(self.atlas.models_for(species)) if species in self.atlas_species else held

    def choose_model(self, requested: str | None, source: str, targets: Sequence[str]) -> str | None:
        """The requested model; else the one model holding the source species (and, among several,
        the one holding every target); None when no model holds it (alignments answer alone)."""
        if requested:
            every = set(self.store_species).union(*(self.models_of(s) for s in self.atlas_species))
            if requested not in every:
                raise NotFound(
                    f"No vectors for model '{requested}' in {self.atlas.root} or its store "
                    f"(it holds: {', '.join(sorted(every)) or 'nothing'}).",
                    param="model",
                    value=requested,
                )
            return requested
        held = self.models_of(source)
        if len(held) > 1:
            held = {m for m in held if all(m in self.models_of(t) for t in targets)} or held
        if len(held) > 1:
            raise Ambiguous(f"{source} is held under several models; choose one.", param="model", choices=sorted(held))
        return next(iter(held), None)

    def choose_target_model(self, requested: str | None, targets: Sequence[str]) -> str | None:
        """For a sequence (no source species): the requested model, else the one model holding
        every target that has vectors; None when none has any."""
        if requested:
            return self.choose_model(requested, targets[0], targets)
        held = set.union(set(), *(self.models_of(t) for t in targets))
        shared = {m for m in held if all(m in self.models_of(t) for t in targets if self.models_of(t))}
        if len(shared) > 1:
            raise Ambiguous(
                "The target species are held under several models; choose one.", param="model", choices=sorted(shared)
            )
        return next(iter(shared), None)

    def has_vectors(self, model: str | None, species: str) -> bool:
        return model is not None and species in self.store_species.get(model, set())

    def genes(self, model: str | None, species: str) -> list[GeneRef]:
        """Every gene of `species`: from the atlas's proteins, else from the store (under `model`)."""
        genes = self.reader.genes(species)
        if genes is not None:
            return genes
        if self.store is None or model is None:
            return []
        return [GeneRef(g.species, g.gene_id, g.gene_symbol) for g in self.store.list_genes(model, species)]

    def counts(self) -> list[tuple[str, str | None, int]]:
        """(species, model, genes) per model the store holds it under, and (species, None, genes) for
        a species of the atlas with no vectors in the store."""
        rows: list[tuple[str, str | None, int]] = [
            (name, model, count)
            for model in sorted(self.store_species)
            for name, count in sorted(self.store.species_counts(model).items())  # type: ignore[union-attr]
        ]
        held = {name for name, _, _ in rows}
        rows += [(name, None, len(self.genes(None, name))) for name in sorted(self.atlas_species - held)]
        return rows

    def resolve(self, model: str | None, species: str, name: str) -> GeneRef:
        candidates = self.reader.named(species, name)
        if candidates is None:
            assert self.store is not None and model is not None  # the species is known, so the store holds it
            return resolve_gene(self.store, model, species, name)
        names = (g.gene_symbol or g.gene_id for g in self.reader.genes(species) or []) if not candidates else ()
        return pick_gene(name, species, candidates, names)

    def mapping_tables(self, model: str | None, source: str, target: str) -> dict[str, MappingTable]:
        """The `orthovec map` tables of the pair, by the evidence they were made from."""
        found: dict[str, MappingTable] = {}
        for folder in [*([model] if model else []), ALIGNMENT_TABLES]:
            for side, (a, b) in (("a", (source, target)), ("b", (target, source))):
                path = self.atlas.mapping(folder, a, b)
                if not path.is_file():
                    continue
                provenance = self.reader.provenance(path)
                evidence = table_evidence(provenance, folder)
                floor = provenance.get("max_evalue")
                max_evalue = float(floor) if isinstance(floor, int | float) else DEFAULT_MAX_EVALUE
                found.setdefault(evidence, MappingTable(path, evidence, side, max_evalue))
        return found

    def alignment_table(self, source: str, target: str) -> tuple[Path, str] | None:
        """The `orthovec align` table of the pair and the query's side in it, if there is one."""
        for side, (a, b) in (("a", (source, target)), ("b", (target, source))):
            path = self.atlas.alignment(a, b)
            if path.is_file():
                return path, side
        return None


def _flip(relation: str | None) -> str | None:
    """A relation as seen from side B (A's one-to-many is B's many-to-one)."""
    return {"one2many": "many2one", "many2one": "one2many"}.get(relation or "", relation)


def _from_mapping(row: Row, side: str) -> Row:
    other = "b" if side == "a" else "a"
    return {
        "gene_id": row[f"gene_id_{other}"],
        "gene_symbol": row[f"gene_symbol_{other}"],
        "table_score": _finite(row["score"]),
        "table_rbh": bool(row["is_rbh"]),
        "is_one2one": bool(row.get("is_one2one_greedy")),
        "relation": row["relation"] if side == "a" else _flip(row["relation"]),
        "group_id": row["group_id"],
        "bits": _finite(row.get("alignment_bits")),
        "bsr": _finite(row.get("alignment_bsr")),
        "identity": _finite(row.get("alignment_identity")),
        "coverage_query": _finite(row.get(f"alignment_coverage_{side}")),
        "coverage_target": _finite(row.get(f"alignment_coverage_{other}")),
        "evalue": _finite(row.get("alignment_evalue")),
        "table_embedding_score": _finite(row.get("embedding_score")),
        "embedding_evalue": _finite(row.get("embedding_evalue")),
        "fused_score": _finite(row.get("fused_score")),
    }


def _from_alignment(row: Row, side: str) -> Row:
    other = "b" if side == "a" else "a"
    return {
        "gene_id": row[f"gene_id_{other}"],
        "gene_symbol": row[f"gene_symbol_{other}"],
        "bits": row["bits"],
        "bsr": row["bsr"],
        "identity": row["identity"],
        "coverage_query": row[f"coverage_{side}"],
        "coverage_target": row[f"coverage_{other}"],
        "evalue": row["evalue"],
    }


def _from_neighbour(hit: Hit) -> Row:
    return {
        "gene_id": hit.gene_id,
        "gene_symbol": hit.gene_symbol,
        "embedding_score": hit.score,
        "embedding_rank": hit.rank,
        "neighbour_rbh": hit.is_rbh,
    }


def _merge(candidates: dict[str, Row], row: Row, source: str) -> None:
    """Add one source's view of a pair to the candidate of that gene (first values win)."""
    current = candidates.setdefault(row["gene_id"], {"sources": set()})
    current["sources"].add(source)
    for key, value in row.items():
        if value is not None and current.get(key) is None:
            current[key] = value


def _cosines(store: GeneStore, model: str, species: str, query: np.ndarray, gene_ids: list[str]) -> dict[str, float]:
    """Cosine of the query vector with each gene's vector (genes the store lacks are left out)."""
    if not gene_ids:
        return {}
    try:
        vectors = store.gene_vectors(model, species, gene_ids)
        present = gene_ids
    except (KeyError, NotFound):  # one of them is not in the store (indexed without it): ask one by one
        kept = []
        for gene_id in gene_ids:
            with contextlib.suppress(KeyError, NotFound):
                kept.append((gene_id, store.gene_vectors(model, species, [gene_id])[0]))
        if not kept:
            return {}
        present, vectors = [g for g, _ in kept], np.stack([v for _, v in kept])
    unit = query / (np.linalg.norm(query) or 1.0)
    norms = np.linalg.norm(vectors, axis=1)
    scores = vectors @ unit / np.where(norms == 0, 1.0, norms)
    return {gene_id: round(float(score), 6) for gene_id, score in zip(present, scores, strict=True)}


@dataclass
class TargetPlan:
    """Where one target species' candidates come from and how they are ordered."""

    species: str
    order: str
    table: MappingTable | None
    alignment: tuple[Path, str] | None
    neighbours: bool
    is_paralog: bool = False
    searched: bool = False  # an MMseqs2 search of the target's proteome gives the alignment rows


def plan_target(
    catalogue: Catalogue, model: str | None, source: str, target: str, evidence: Evidence, searchable: bool = False
) -> TargetPlan:
    """Which sources answer for `target`, and the evidence order (see the module docstring)."""
    vectors = catalogue.has_vectors(model, source) and catalogue.has_vectors(model, target)
    if target == source:
        return plan_paralogs(catalogue, source, evidence, vectors, searchable)
    tables = catalogue.mapping_tables(model, source, target)
    alignment = catalogue.alignment_table(source, target)
    aligned = alignment is not None or "alignment" in tables or "fused" in tables
    embedded = vectors or "embedding" in tables or "fused" in tables
    available = {
        "fused": "fused" in tables or (alignment is not None and vectors),
        "alignment": aligned,
        "embedding": embedded,
    }
    hint = f"run `orthovec align {source} {target}` (and `orthovec map {source} {target}`)"
    if evidence == "auto":
        order = next((name for name in STRENGTH if available[name]), None)
        if order is None:
            raise NotFound(
                f"Nothing relates {source} and {target} yet: no alignments, no mapping table and no gene "
                f"vectors of one model for both; {hint}.",
                param="to",
                value=target,
            )
    elif not available[evidence]:
        raise NotFound(
            f"{source} and {target} have no {evidence} evidence: "
            + (hint if evidence != "embedding" else "index both species with one model")
            + ".",
            param="evidence",
            value=evidence,
        )
    else:
        order = evidence
    table = tables.get(order) or next((tables[name] for name in STRENGTH if name in tables), None)
    # The alignment table is read where the order needs alignments and the mapping table has none.
    needs_alignment = order in ("fused", "alignment") and (table is None or table.evidence == "embedding")
    return TargetPlan(target, order, table, alignment if needs_alignment else None, vectors)


def plan_paralogs(
    catalogue: Catalogue, species: str, evidence: Evidence, vectors: bool, searchable: bool
) -> TargetPlan:
    """Paralogs: the gene's proteins searched against its own species (MMseqs2), and its embedding
    neighbours there; no table holds a species against itself."""
    searched = searchable and species in catalogue.atlas_species
    plan = plan_sequence_target(species, evidence, searched, vectors)
    plan.is_paralog = True
    return plan


def _score(row: Row, plan: TargetPlan) -> float | None:
    if plan.order == "embedding":
        return row.get("embedding_score")
    if plan.order == "alignment":
        return row.get("bsr")
    if plan.table is not None and plan.table.evidence == "fused":
        return row.get("table_score")
    return None if row.get("bsr") is None else 1.0 + row["bsr"]


def _order_key(row: Row) -> tuple[bool, float, bool, float, str]:
    score, cosine = row["score"], row.get("embedding_score")
    return (
        score is None,
        -(score if score is not None else 0.0),
        not row.get("is_one2one", False),
        -(cosine if cosine is not None else -math.inf),
        row["gene_id"],
    )


def _evidence(row: Row) -> str:
    aligned = row.get("bsr") is not None
    embedded = "neighbours" in row["sources"] or row.get("embedding_evalue") is not None
    return "both" if aligned and embedded else "alignment" if aligned else "embedding"


def gather(
    catalogue: Catalogue,
    plan: TargetPlan,
    model: str | None,
    query: GeneRef,
    query_vector: np.ndarray | None,
    k: int,
    search: SequenceSearch | None = None,
) -> dict[str, Row]:
    """Every candidate of `query` in one target species, by gene, from the sources `plan` names."""
    candidates: dict[str, Row] = {}
    table = plan.table
    if table is not None:
        column = f"gene_id_{table.query_side}"
        for row in catalogue.reader.rows(table.path, MAPPING, column, query.gene_id):
            _merge(candidates, _from_mapping(row, table.query_side), "table")
    if plan.alignment is not None:
        path, side = plan.alignment
        for row in catalogue.reader.rows(path, ALIGNMENT, f"gene_id_{side}", query.gene_id):
            _merge(candidates, _from_alignment(row, side), "alignment")
    if plan.searched and search is not None:
        for row in _own_species_hits(catalogue, search, query):
            _merge(candidates, row, "alignment")
    if plan.neighbours and query_vector is not None:
        add_neighbours(catalogue, plan, model, query_vector, k, query, candidates)
    return candidates


def _own_species_hits(catalogue: Catalogue, search: SequenceSearch, query: GeneRef) -> list[Row]:
    """The query gene's proteins searched against its own species: each other gene once, from the
    isoform pair with the most bits."""
    path = catalogue.atlas.proteins(query.species)
    proteins = catalogue.reader.rows(path, PROTEINS, "gene_id", query.gene_id)
    records = [(row["protein_id"], row["sequence"]) for row in proteins]
    best: dict[str, Row] = {}
    for hits in search(records, query.species) if records else []:
        for row in hits:
            if row["gene_id"] != query.gene_id and row["bits"] > best.get(row["gene_id"], {"bits": -1.0})["bits"]:
                best[row["gene_id"]] = row
    return sorted(best.values(), key=lambda row: -row["bits"])


def add_neighbours(
    catalogue: Catalogue,
    plan: TargetPlan,
    model: str | None,
    query_vector: np.ndarray,
    k: int,
    query: GeneRef | None,
    candidates: dict[str, Row],
) -> None:
    """The query's top-k embedding neighbours join the candidates, and every candidate gets its cosine."""
    if catalogue.store is None or model is None:
        return
    source = query.species if query is not None else None
    (hits,) = search_vectors(catalogue.store, model, query_vector[None, :], [plan.species], k, source, [query])
    for hit in hits:
        _merge(candidates, _from_neighbour(hit), "neighbours")
    cosines = _cosines(catalogue.store, model, plan.species, query_vector, list(candidates))
    for gene_id, row in candidates.items():
        row["embedding_score"] = cosines.get(gene_id, row.get("embedding_score"))


def ranked_rows(
    candidates: dict[str, Row],
    plan: TargetPlan,
    model: str | None,
    k: int,
    is_rbh: Callable[[Row, int], bool],
    judged: bool,
) -> tuple[list[Homolog], TargetSpecies]:
    """The top-k candidates in the evidence order, as Homolog rows, and the target's summary.

    `judged`: some source gave E-values, so "nothing clears the floor" is worth saying.
    """
    for row in candidates.values():
        if row.get("embedding_score") is None:
            row["embedding_score"] = row.get("table_embedding_score")
        row["score"] = _score(row, plan)
    ranked = sorted(candidates.values(), key=_order_key)
    rows = []
    for rank, row in enumerate(ranked[:k], start=1):
        after = ranked[rank]["score"] if rank < len(ranked) else None
        rows.append(
            Homolog(
                species=plan.species,
                gene_id=row["gene_id"],
                gene_symbol=row.get("gene_symbol"),
                rank=rank,
                score=row["score"],
                margin=None if row["score"] is None or after is None else round(row["score"] - after, 6),
                evidence=_evidence(row),
                is_one2one=row.get("is_one2one", False),
                relation=row.get("relation"),
                group_id=row.get("group_id"),
                is_rbh=is_rbh(row, rank),
                is_paralog=plan.is_paralog,
                bits=row.get("bits"),
                bsr=row.get("bsr"),
                identity=row.get("identity"),
                coverage_query=row.get("coverage_query"),
                coverage_target=row.get("coverage_target"),
                evalue=row.get("evalue"),
                embedding_score=row.get("embedding_score"),
                embedding_rank=row.get("embedding_rank"),
                embedding_evalue=row.get("embedding_evalue"),
                fused_score=row.get("fused_score"),
            )
        )
    table = plan.table
    floor = table.max_evalue if table is not None else DEFAULT_MAX_EVALUE
    passing = any(
        h.is_one2one or any(e is not None and e <= floor for e in (h.evalue, h.embedding_evalue)) for h in rows
    )
    summary = TargetSpecies(
        species=plan.species,
        evidence=plan.order,
        model=model if plan.neighbours or (table is not None and table.evidence != "alignment") else None,
        mapping=table.path.name if table is not None else None,
        max_evalue=floor,
        note=None if passing or not judged else f"no homolog with E-value ≤ {floor:g} in {plan.species}",
    )
    return rows, summary


def is_rbh(catalogue: Catalogue, plan: TargetPlan, query: GeneRef, row: Row, rank: int) -> bool:
    """Reciprocal best hit under the evidence order: the mapping table's flag where the table was
    made from that evidence, the store's for an embedding neighbour, else whether the hit's best
    aligned partner back in the query's species is the query."""
    if plan.is_paralog or rank != 1:
        return False
    if plan.table is not None and plan.table.evidence == plan.order and "table" in row["sources"]:
        return bool(row.get("table_rbh"))
    if plan.order == "embedding" or row.get("bsr") is None:
        return bool(row.get("neighbour_rbh"))
    return _best_aligned_back(catalogue, plan, row["gene_id"]) == query.gene_id


def _best_aligned_back(catalogue: Catalogue, plan: TargetPlan, gene_id: str) -> str | None:
    """The query-species gene with the highest BSR (then bits) against `gene_id` of the target."""
    if plan.alignment is not None:
        path, side = plan.alignment
        other = "b" if side == "a" else "a"
        back = catalogue.reader.rows(path, ALIGNMENT, f"gene_id_{other}", gene_id)
        scored = [(r["bsr"], r["bits"], r[f"gene_id_{side}"]) for r in back]
    elif plan.table is not None and plan.table.evidence != "embedding":
        side = plan.table.query_side
        other = "b" if side == "a" else "a"
        back = catalogue.reader.rows(plan.table.path, MAPPING, f"gene_id_{other}", gene_id)
        scored = [
            (r["alignment_bsr"], r["alignment_bits"], r[f"gene_id_{side}"])
            for r in back
            if _finite(r.get("alignment_bsr")) is not None
        ]
    else:
        return None
    return max(scored, default=(None, None, None))[2]


def _check_request(k: int, evidence: str) -> None:
    check_number("k", k)
    if evidence not in EVIDENCE:
        raise Invalid("is not an evidence order.", param="evidence", value=evidence, choices=EVIDENCE)


def homologs(
    atlas: Atlas,
    gene: str,
    from_species: str,
    *,
    to: Sequence[str] | None = None,
    k: int = 10,
    evidence: Evidence = "auto",
    model: str | None = None,
    store: GeneStore | None = None,
    reader: AtlasReader | None = None,
    search: SequenceSearch | None = None,
) -> HomologsResponse:
    """The top-k homolog candidates of `gene` (symbol or ID, any case) of `from_species` in each
    species of `to` (default: every other species of the atlas and its store).

    `store` supplies the embedding neighbours (None: the atlas's mapping and alignment tables
    answer alone, as for species indexed without embeddings); `reader` reads the atlas's tables
    (the server passes one that caches them); `search` (MMseqs2) finds paralogs, when `to` names
    the gene's own species. Raises `NotFound` for an unknown species, gene or
    model, `Ambiguous` for a symbol of several genes or a species held under several models.
    """
    _check_request(k, evidence)
    catalogue = Catalogue(atlas, store, reader or AtlasReader(atlas))
    catalogue.check([from_species, *(to or [])])
    targets = list(dict.fromkeys(to)) if to else sorted(s for s in catalogue.species() if s != from_species)
    if not targets:
        raise NotFound(f"No other species than {from_species} in {atlas.root}: index a second proteome first.")
    chosen = catalogue.choose_model(model, from_species, targets)
    query = catalogue.resolve(chosen, from_species, gene)
    plans = [plan_target(catalogue, chosen, from_species, t, evidence, search is not None) for t in targets]
    query_vector = None
    if store is not None and chosen is not None and any(plan.neighbours for plan in plans):
        with contextlib.suppress(KeyError, NotFound):  # a gene indexed without a vector: no neighbours
            query_vector = store.gene_vectors(chosen, from_species, [query.gene_id])[0]
    hits: list[Homolog] = []
    summaries: list[TargetSpecies] = []
    for plan in plans:
        candidates = gather(catalogue, plan, chosen, query, query_vector, k, search)
        judged = plan.table is not None or plan.alignment is not None or plan.searched
        rows, summary = ranked_rows(candidates, plan, chosen, k, partial(is_rbh, catalogue, plan, query), judged)
        hits += rows
        summaries.append(summary)
    used = chosen if any(s.model for s in summaries) else None
    return HomologsResponse(
        query=GeneModel(species=query.species, gene_id=query.gene_id, gene_symbol=query.gene_symbol),
        model=used,
        targets=summaries,
        hits=hits,
    )


def homologs_of_sequences(
    atlas: Atlas,
    records: Sequence[tuple[str, str]],
    *,
    to: Sequence[str],
    k: int = 10,
    evidence: Evidence = "auto",
    model: str | None = None,
    store: GeneStore | None = None,
    reader: AtlasReader | None = None,
    embed: SequenceEmbedder | None = None,
    search: SequenceSearch | None = None,
) -> list[HomologsResponse]:
    """The top-k homolog candidates of raw protein sequences, (name, sequence) each, in each species of `to`.

    `search` (MMseqs2 against each species' proteome) answers without any weights; `embed`
    (sequences, model -> vectors) adds the embedding neighbours; with both, they are fused as for a
    gene. No source gene, so no RBH and no mapping-table call.
    """
    from orthovec.lookup.sequence import clean_query

    _check_request(k, evidence)
    if not to:
        raise Invalid("sequence queries need at least one target species.", param="to")
    cleaned = [
        (name, clean_query(sequence, f"query sequence {i} ({name})")) for i, (name, sequence) in enumerate(records, 1)
    ]
    catalogue = Catalogue(atlas, store, reader or AtlasReader(atlas))
    catalogue.check(to)
    targets = list(dict.fromkeys(to))
    chosen = catalogue.choose_target_model(model, targets)
    embedded = [t for t in targets if catalogue.has_vectors(chosen, t)] if embed is not None and chosen else []
    searched = [t for t in targets if search is not None and t in catalogue.atlas_species]
    vectors = (
        embed([sequence for _, sequence in cleaned], chosen) if embed is not None and embedded and chosen else None
    )
    found = {target: search(cleaned, target) for target in searched} if search is not None else {}
    answers = []
    for index, (name, _) in enumerate(cleaned):
        hits: list[Homolog] = []
        summaries: list[TargetSpecies] = []
        for target in targets:
            plan = plan_sequence_target(target, evidence, target in found, target in embedded)
            candidates: dict[str, Row] = {}
            for row in found[target][index] if plan.searched else []:
                _merge(candidates, row, "alignment")
            if vectors is not None and plan.neighbours:
                add_neighbours(catalogue, plan, chosen, vectors[index], k, None, candidates)
            rows, summary = ranked_rows(candidates, plan, chosen, k, lambda row, rank: False, judged=target in found)
            hits += rows
            summaries.append(summary)
        answers.append(
            HomologsResponse(
                query=GeneModel(species=None, gene_id=name, gene_symbol=None),
                model=chosen if vectors is not None else None,
                targets=summaries,
                hits=hits,
            )
        )
    return answers


def plan_sequence_target(target: str, evidence: Evidence, searched: bool, embedded: bool) -> TargetPlan:
    """The evidence order for a sequence in `target`: fused when it was both searched and embedded."""
    available = {"fused": searched and embedded, "alignment": searched, "embedding": embedded}
    order = next((n for n in STRENGTH if available[n]), None) if evidence == "auto" else evidence
    if order is None or not available[order]:
        what = "MMseqs2 search database or gene vectors" if order is None else f"{order} evidence"
        raise NotFound(
            f"No {what} for sequences in {target}: index its proteome (`orthovec index`), or embed with weights.",
            param="to" if order is None else "evidence",
            value=target if order is None else evidence,
        )
    return TargetPlan(
        target,
        order,
        None,
        None,
        neighbours=embedded and order != "alignment",
        searched=searched and order != "embedding",
    )


def query_sequences(
    atlas: Atlas,
    records: Sequence[tuple[str, str]],
    *,
    to: Sequence[str],
    k: int = 10,
    evidence: Evidence = "auto",
    model: str | None = None,
    weights: Path | None = None,
    device: str = "auto",
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
) -> list[HomologsResponse]:
    """`homologs_of_sequences` over an atlas directory, for one caller: searched with MMseqs2, and
    embedded with `weights` (default: the checkpoint the atlas was indexed with, while it is still
    where it was; never a download)."""
    from orthovec.lookup.sequence import lazy_embedder, sequence_weights

    with reading_store(atlas, qdrant_url, qdrant_api_key) as store:
        embed = None
        if store is not None:
            checkpoint = sequence_weights(atlas, [model] if model else store.models(), weights)
            embed = lazy_embedder(atlas, checkpoint, device) if checkpoint else None
        return homologs_of_sequences(
            atlas,
            records,
            to=to,
            k=k,
            evidence=evidence,
            model=model,
            store=store,
            embed=embed,
            search=mmseqs_search(atlas),
        )


@contextlib.contextmanager
def reading_store(
    atlas: Atlas, qdrant_url: str | None = None, api_key: str | None = None
) -> Iterator[GeneStore | None]:
    """The store a query reads, opened as a reader (each model checked to hold one embedding
    space) and closed after; None for an atlas indexed without embeddings (it has no embedded
    store), where the mapping and alignment tables answer alone."""
    from orthovec.lookup.store.load import check_store_space

    embedded = atlas.root / "qdrant"
    if not qdrant_url and not (embedded.is_dir() and any(p.is_dir() for p in embedded.iterdir())):
        yield None
        return
    store = open_store(atlas, qdrant_url, api_key, read_only=True)
    try:
        for model in store.models():
            check_store_space(store, model)
        yield store
    finally:
        store.close()


def query_atlas(
    atlas: Atlas,
    gene: str,
    from_species: str,
    *,
    to: Sequence[str] | None = None,
    k: int = 10,
    evidence: Evidence = "auto",
    model: str | None = None,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
) -> HomologsResponse:
    """`homologs` over an atlas directory (and a Qdrant server, with `qdrant_url`), for one caller.

    While `orthovec serve` serves the atlas's embedded store on this machine, the server is asked
    (`GET /homologs`): it holds the store, and answers with the same rows. A server that wants an
    API key, or does not answer, is passed over and the atlas is read in place.
    """
    if not qdrant_url:
        from orthovec.lookup.store import serving_url

        url = serving_url(atlas)
        if url is not None:
            params = {"gene": gene, "from": from_species, "k": k, "evidence": evidence, "model": model, "to": to}
            answer = ask_server(url, params)
            if answer is not None:
                get_logger("lookup").info("Answered by the orthovec server at %s, which serves %s.", url, atlas.root)
                return answer
    with reading_store(atlas, qdrant_url, qdrant_api_key) as store:
        return homologs(
            atlas,
            gene,
            from_species,
            to=to,
            k=k,
            evidence=evidence,
            model=model,
            store=store,
            search=mmseqs_search(atlas),
        )


def ask_server(url: str, params: dict[str, Any]) -> HomologsResponse | None:
    """`GET url/homologs` with `params` (None values left out, lists repeated); None when the server
    does not answer or wants an API key; a 4xx or 503 becomes the error kind its status stands for."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from orthovec.schemas.errors import HTTP_STATUS, UserError

    pairs = [
        (name, str(item))
        for name, value in params.items()
        if value is not None
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    request = f"{url}/homologs?{urllib.parse.urlencode(pairs)}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server is on this machine
    try:
        with direct.open(request, timeout=60) as response:
            return HomologsResponse.model_validate_json(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403) or (error.code >= 500 and error.code != 503):
            get_logger("lookup").debug("The server at %s answered %s; reading the atlas in place.", url, error.code)
            return None
        try:
            detail = json.loads(error.read()).get("detail")
        except ValueError:
            detail = None
        kinds = {status: kind for kind, status in HTTP_STATUS.items() if kind is not UserError}
        raise kinds.get(error.code, UserError)(str(detail or f"The server at {url} answered {error.code}.")) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        get_logger("lookup").debug("The server at %s did not answer (%s); reading the atlas in place.", url, error)
        return None
