"""`orthovec build`: the plan of steps a manifest implies, and running the ones not yet done.

Steps: per species, fetch → proteins (the proteins table, all alignment needs) → database (its
MMseqs2 search database) and index (embedding; it ends by loading the genes into the embedded
store, or the Qdrant server the manifest names; none for a species with `embed = false`); per
pair, align (after both species' proteins) → map; groups (all species). Each finished step
leaves a *stamp* (`ATLAS/build/<step>.json`): the key it ran under and the content hash of every output it wrote.
The key hashes the step's settings and the output hashes of the steps it reads, so:

- a step is skipped when its stamp's key equals the key computed now and its outputs still hold
  the recorded content (checked by size and mtime first, hashed again only when those moved);
- a changed source changes its fetch output hash, hence the keys of that species' index, its
  pairs and the groups, and nothing else; an index that reproduces the same gene table leaves its
  pairs untouched;
- a killed build restarts where it stopped: stamps are written (atomically) only after a step's
  outputs are complete, and the steps themselves resume (the indexer's chunk cache, the
  download's partial file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orthovec.build.fetch import FetchConfig, fetch_proteome
from orthovec.build.manifest import Manifest, SpeciesEntry
from orthovec.core.logs import get_logger
from orthovec.core.version import __version__
from orthovec.schemas.atlas import Atlas
from orthovec.schemas.errors import Invalid, Unavailable, UserError

if TYPE_CHECKING:
    from orthovec.build.species import SpeciesState
    from orthovec.indexer.pipeline import ProgressFactory

logger = get_logger("build")
#: How long an array task waits for another to finish registering the same species' proteins.
PROTEINS_LOCK_WAIT_S = 600.0

StepKind = Literal["fetch", "proteins", "database", "index", "align", "map", "groups"]
Status = Literal["ran", "up to date", "to run", "unavailable", "shard done", "failed", "not reached"]


@dataclass(frozen=True)
class Step:
    name: str  # "index:human", "map:human__mouse"
    kind: StepKind
    species: tuple[str, ...]
    after: tuple[str, ...]  # steps whose outputs this one reads
    params: dict[str, Any]  # the settings that change its output (part of the key)
    #: An index step wants every core (or the GPU) to itself, and ends by writing the store (one
    #: writer at a time), so index steps take turns whatever `jobs` says.
    exclusive: bool = False
    #: Steps to let finish first without reading their outputs (not part of the key): an alignment
    #: waits for its species' search databases rather than build a second copy beside them.
    also_after: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildOptions:
    jobs: int = 1
    shard: tuple[int, int] | None = None
    dry_run: bool = False
    refresh_sources: bool = False  # download remote sources again (steps downstream rerun only if content changed)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    qdrant_api_key: str | None = None

    def __post_init__(self) -> None:
        if self.shard is not None and not (self.shard[1] >= 1 and 0 <= self.shard[0] < self.shard[1]):
            shard = f"{self.shard[0]}/{self.shard[1]}"
            raise Invalid("expected I/N with 0 <= I < N (for example 0/4).", param="shard", value=shard)


@dataclass
class BuildEvents:
    """How a caller follows the build beyond the `orthovec.build` log: embedding progress for each
    index step (given the species, a context that yields the indexer's progress factory)."""

    embedding_progress: Callable[[str], contextlib.AbstractContextManager[ProgressFactory]] | None = None


@dataclass
class Outcome:
    step: str
    kind: StepKind
    status: Status
    reason: str = ""
    seconds: float = 0.0  # this run
    built_seconds: float | None = None  # when it last ran (a skipped step's cost when it was built)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildReport:
    manifest: str
    atlas: str
    dry_run: bool
    outcomes: list[Outcome]
    seconds: float = 0.0

    @property
    def nothing_to_do(self) -> bool:
        """Every step was current (an unavailable alignment is reported, not counted as work)."""
        return all(o.status in ("up to date", "unavailable") for o in self.outcomes)

    def of_kind(self, kind: StepKind) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nothing_to_do": self.nothing_to_do}


# --- the plan ---------------------------------------------------------------------------------


def plan_steps(manifest: Manifest, options: BuildOptions, hashes: FileHashes) -> list[Step]:
    """Every step the manifest implies, each after the steps it reads (a topological order).

    Files the index reads besides the proteome (weights, gene maps) enter its key by content.
    With `options.shard` (one task of an array), the steps that task takes (see `task_steps`).
    """
    settings = manifest.atlas
    weights = hashes.stamp(settings.weights).sha256 if settings.weights else f"hub:{settings.model}"
    steps: list[Step] = []
    for entry in manifest.species:
        steps.append(Step(f"fetch:{entry.name}", "fetch", (entry.name,), (), _fetch_params(entry)))
    for entry in manifest.species:
        params = {
            "taxid": entry.taxid,
            "unresolved": entry.unresolved,
            "gene_map": hashes.stamp(entry.gene_map).sha256 if entry.gene_map else None,
        }
        steps.append(Step(f"proteins:{entry.name}", "proteins", (entry.name,), (f"fetch:{entry.name}",), params))
    if settings.align:
        for entry in manifest.species:
            steps.append(Step(f"database:{entry.name}", "database", (entry.name,), (f"proteins:{entry.name}",), {}))
    for entry in manifest.species:
        if not manifest.embeds(entry.name):
            continue
        params = {
            "model": settings.model,
            "weights": weights,
            "layer": settings.layer,
            "pooling": entry.pooling or settings.pooling,
            "precision": settings.precision,
            "long_seqs": settings.long_seqs,
            "store": settings.qdrant_url or "embedded",
        }
        after = (f"fetch:{entry.name}", f"proteins:{entry.name}")
        steps.append(Step(f"index:{entry.name}", "index", (entry.name,), after, params, exclusive=True))
    maps: list[str] = []
    for a, b in manifest.pairs():
        reads: tuple[str, ...] = (f"proteins:{a}", f"proteins:{b}")
        if settings.align:
            databases = (f"database:{a}", f"database:{b}")
            sensitivity = {"sensitivity": settings.align_sensitivity}
            steps.append(Step(f"align:{a}__{b}", "align", (a, b), reads, sensitivity, also_after=databases))
            reads = (*reads, f"align:{a}__{b}")
        reads = (*reads, *(f"index:{name}" for name in (a, b) if manifest.embeds(name)))
        steps.append(Step(f"map:{a}__{b}", "map", (a, b), reads, dict(settings.mapping)))
        maps.append(f"map:{a}__{b}")
    if len(manifest.names) > 2:
        steps.append(Step("groups", "groups", tuple(manifest.names), tuple(maps), {}))
    return steps if options.shard is None else task_steps(steps, options.shard)


def task_steps(steps: list[Step], shard: tuple[int, int]) -> list[Step]:
    """The steps array task `shard` = (I, N) takes: a share of the work, and nothing another task waits for.

    Every task fetches every source (downloads are shared through the cache's lock), registers
    every species' proteins (short, and what its alignments read) and embeds its share of every
    proteome's chunks (the task that completes a species assembles it). Search databases go to
    one task per species and alignments and mappings to one task per pair, chosen by a hash of
    the name, so each is built once across the array. The groups, and whatever a task could not
    reach (a mapping whose embeddings another task assembles), are left to the final unsharded build.
    """
    index, count = shard

    def owner(name: str) -> int:
        return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % count

    shared = ("fetch", "proteins", "index")
    return [
        step
        for step in steps
        if step.kind in shared or (step.kind != "groups" and owner("__".join(step.species)) == index)
    ]


def _fetch_params(entry: SpeciesEntry) -> dict[str, Any]:
    return {"source": str(entry.source), "sha256": entry.sha256}


# --- stamps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStamp:
    path: str
    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Stamp:
    key: str
    params: dict[str, Any]
    inputs: dict[str, str]  # step name -> its output digest
    outputs: dict[str, FileStamp]
    info: dict[str, Any]
    seconds: float
    finished_at: str

    @property
    def digest(self) -> str:
        """What downstream keys hash: the content of this step's outputs (the key when it has none)."""
        if not self.outputs:
            return self.key
        return _hash({label: stamp.sha256 for label, stamp in self.outputs.items()})


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class FileHashes:
    """SHA-256 of files, remembered by (size, mtime): a no-op rerun must not rehash gigabytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known: dict[str, list[Any]] = {}
        if path.is_file():
            with contextlib.suppress(ValueError):
                self._known = json.loads(path.read_text())

    def stamp(self, path: Path) -> FileStamp:
        stat = path.stat()
        key = str(path.resolve())
        with self._lock:
            known = self._known.get(key)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return FileStamp(str(path), known[2], stat.st_size, stat.st_mtime_ns)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        with self._lock:
            self._known[key] = [stat.st_size, stat.st_mtime_ns, digest.hexdigest()]
        return FileStamp(str(path), digest.hexdigest(), stat.st_size, stat.st_mtime_ns)

    def save(self) -> None:
        with self._lock:
            _write_json(self.path, self._known)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class Stamps:
    """The stamps of one atlas's build directory.

    An output inside the atlas is recorded relative to the atlas's root, so a copied or moved
    atlas checks its own files (a copy with a table missing is not up to date); an output
    elsewhere (a local source file) keeps its absolute path.
    """

    def __init__(self, root: Path, hashes: FileHashes) -> None:
        self.root, self.directory, self.hashes = root, root / "build", hashes

    def recorded(self, path: Path) -> FileStamp:
        """The stamp of an output as a stamp file records it."""
        stamp = self.hashes.stamp(path)
        with contextlib.suppress(ValueError):
            return dataclasses.replace(stamp, path=str(Path(path).absolute().relative_to(self.root)))
        return stamp

    def resolve(self, recorded: FileStamp) -> Path:
        """Where a recorded output is now (relative ones within this atlas)."""
        return self.root / recorded.path

    def path(self, step: str) -> Path:
        return self.directory / f"{step.replace(':', '-')}.json"

    def read(self, step: str) -> Stamp | None:
        path = self.path(step)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            outputs = {label: FileStamp(**stamp) for label, stamp in data.pop("outputs").items()}
            return Stamp(outputs=outputs, **data)
        except (ValueError, TypeError, KeyError):
            return None  # written by another version: rebuild the step rather than trust it

    def write(self, stamp: Stamp, step: str) -> None:
        _write_json(self.path(step), asdict(stamp))

    def staleness(self, stamp: Stamp | None, key: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
        """Why a step must run ("" when its stamp is current)."""
        if stamp is None:
            return "not built yet"
        if stamp.key != key:
            changed = [name for name in sorted(params) if stamp.params.get(name) != params[name]]
            if changed:
                return f"settings changed ({', '.join(changed)})"
            moved = [name for name in sorted(inputs) if stamp.inputs.get(name) != inputs[name]]
            return f"input changed ({', '.join(moved)})" if moved else "inputs changed"
        for label, recorded in stamp.outputs.items():
            path = self.resolve(recorded)
            if not path.is_file():
                return f"{label} missing ({path})"
            if self.hashes.stamp(path).sha256 != recorded.sha256:
                return f"{label} was modified ({path})"
        return ""


# --- running ------------------------------------------------------------------------------------


@dataclass
class _Done:
    outputs: dict[str, Path]
    info: dict[str, Any]
    status: Status = "ran"


class _StepUnavailable(Exception):
    """The step cannot run in this install (e.g. alignment without MMseqs2); the build goes on."""


def run_build(
    manifest: Manifest, atlas: Atlas, options: BuildOptions | None = None, events: BuildEvents | None = None
) -> BuildReport:
    """Run (or, with `dry_run`, describe) every step of the manifest that is not already done."""
    options, events = options or BuildOptions(), events or BuildEvents()
    started = time.perf_counter()
    atlas = Atlas(atlas.root.absolute())
    state = atlas.build_state()
    hashes = FileHashes(state / "file_hashes.json")
    stamps = Stamps(atlas.root, hashes)
    steps = plan_steps(manifest, options, hashes)
    report = BuildReport(str(manifest.path), str(atlas.root), options.dry_run, [])
    with _build_lock(state, options) as cannot_write:
        # An atlas that cannot be written is checked as a dry run: current, it is a no-op build.
        checked = dataclasses.replace(options, dry_run=True) if cannot_write else options
        report.outcomes = _Runner(manifest, atlas, checked, events, stamps, steps).run()
    if cannot_write:
        waiting = [outcome.step for outcome in report.outcomes if outcome.status == "to run"]
        if waiting:
            raise Unavailable(
                f"{atlas.root}: the atlas cannot be written ({cannot_write}), and {len(waiting)} steps would run "
                f"({', '.join(waiting[:6])}{', ...' if len(waiting) > 6 else ''}). Copy the atlas somewhere "
                "writable or remount it read-write; a build with nothing to do works on a read-only atlas."
            )
    elif not options.dry_run:
        hashes.save()
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _build_lock(state: Path, options: BuildOptions) -> Iterator[str]:
    """One unsharded build per atlas at a time; shards of one array run side by side by design.

    Yields "" when the build may write, else why it cannot (a read-only file system, no permission).
    """
    if options.dry_run or options.shard is not None:
        yield ""
        return
    try:
        state.mkdir(parents=True, exist_ok=True)
        lock = open(state / ".lock", "w")  # noqa: SIM115 - held for the build's lifetime, closed below
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        yield err.strerror or "not writable"
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Unavailable(
                f"Another `orthovec build` is running on {state.parent}; wait for it to finish (a build of the "
                "same manifest afterwards is a no-op)."
            ) from None
        yield ""


class _Runner:
    """Schedules the steps: a step starts once the steps it reads are done, up to `jobs` at a time."""

    def __init__(
        self,
        manifest: Manifest,
        atlas: Atlas,
        options: BuildOptions,
        events: BuildEvents,
        stamps: Stamps,
        steps: list[Step],
    ) -> None:
        self.manifest, self.atlas, self.options, self.events, self.stamps = manifest, atlas, options, events, stamps
        self.steps = {step.name: step for step in steps}
        self.outcomes: dict[str, Outcome] = {}
        self.digests: dict[str, str] = {}  # finished (or current) step -> output digest
        self._states: dict[tuple[str, str | None], SpeciesState] | None = None

    def run(self) -> list[Outcome]:
        pending = list(self.steps.values())
        running: dict[Future[_Done], tuple[Step, str, dict[str, str], float]] = {}
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool:
            while pending or running:
                for step in list(pending):
                    if failure is not None:
                        break
                    blocked = [name for name in step.after if name in self.outcomes and name not in self.digests]
                    if blocked:
                        pending.remove(step)
                        if self.options.dry_run and all(self.outcomes[n].status == "to run" for n in blocked):
                            self.outcomes[step.name] = Outcome(step.name, step.kind, "to run", f"after {blocked[0]}")
                            continue
                        why = f"{blocked[0]} {self.outcomes[blocked[0]].status}"
                        self.outcomes[step.name] = Outcome(step.name, step.kind, "not reached", why)
                        continue
                    if not all(name in self.digests for name in step.after):
                        continue
                    if any(name in self.steps and name not in self.outcomes for name in step.also_after):
                        continue
                    inputs = {name: self.digests[name] for name in step.after}
                    key = _hash({"step": step.kind, "params": step.params, "inputs": inputs})
                    stamp = self.stamps.read(step.name)
                    reason = self._reason(step, stamp, key, inputs)
                    if not reason and stamp is not None:
                        pending.remove(step)
                        self.digests[step.name] = stamp.digest
                        self.outcomes[step.name] = Outcome(
                            step.name, step.kind, "up to date", "", 0.0, stamp.seconds, stamp.info
                        )
                        continue
                    if self.options.dry_run:
                        pending.remove(step)
                        self.outcomes[step.name] = Outcome(step.name, step.kind, "to run", reason)
                        continue
                    busy = len(running) >= max(1, self.options.jobs)
                    if busy or (step.exclusive and any(s.exclusive for s, *_ in running.values())):
                        continue
                    pending.remove(step)
                    logger.info(f"{step.name}: running ({reason})")
                    running[pool.submit(self._execute, step)] = (step, key, inputs, time.perf_counter())
                # One pass in plan order settles every step whose inputs are settled, so with nothing
                # running, whatever is still pending waits behind a failure (or this is a dry run).
                if self.options.dry_run or not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    step, key, inputs, began = running.pop(future)
                    try:
                        self._finish(step, key, inputs, began, future.result())
                    except BaseException as err:  # reported below, after the running steps end
                        seconds = time.perf_counter() - began
                        self.outcomes[step.name] = Outcome(step.name, step.kind, "failed", _first_line(err), seconds)
                        failure = failure or err
        if failure is not None:
            raise _with_step(failure, self._failed_step())
        return [self.outcomes[name] for name in self.steps if name in self.outcomes]

    def species_state(self, species: str, model: str) -> SpeciesState | None:
        """What `orthovec species` says of a species, read once per build (one read-only store open)."""
        if self._states is None:
            from orthovec.build.species import species_states

            self._states = {(state.species, state.model): state for state in species_states(self.atlas)}
        return self._states.get((species, model))

    def _reason(self, step: Step, stamp: Stamp | None, key: str, inputs: dict[str, str]) -> str:
        if step.kind == "fetch" and self.options.refresh_sources and self.manifest_entry(step).source.remote:
            return "--refresh-sources"
        if step.kind == "index" and stamp is not None and not self.manifest.atlas.qdrant_url:
            # the store is not a file with a hash: ask it whether it still holds the species
            state = self.species_state(step.species[0], str(stamp.info.get("model")))
            if state is not None and state.state != "complete":
                return f"{state.state}: {state.note}"
        return self.stamps.staleness(stamp, key, step.params, inputs)

    def _finish(self, step: Step, key: str, inputs: dict[str, str], began: float, done: _Done) -> None:
        seconds = time.perf_counter() - began
        if done.status != "ran":
            self.outcomes[step.name] = Outcome(step.name, step.kind, done.status, done.info.get("why", ""), seconds)
            if done.status == "unavailable":
                self.digests[step.name] = "unavailable"  # later steps run without this evidence
            logger.info(f"{step.name}: {done.status} ({done.info.get('why', '')})")
            return
        outputs = {label: self.stamps.recorded(path) for label, path in done.outputs.items()}
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        stamp = Stamp(key, step.params, inputs, outputs, done.info, round(seconds, 3), finished)
        self.stamps.write(stamp, step.name)
        self.digests[step.name] = stamp.digest
        self.outcomes[step.name] = Outcome(step.name, step.kind, "ran", "", seconds, seconds, done.info)
        logger.info(f"{step.name}: done in {seconds:.1f} s")

    def _failed_step(self) -> str:
        return next((o.step for o in self.outcomes.values() if o.status == "failed"), "?")

    def manifest_entry(self, step: Step) -> SpeciesEntry:
        return next(entry for entry in self.manifest.species if entry.name == step.species[0])

    # --- the steps themselves (run in worker threads) ----------------------------------------

    def _execute(self, step: Step) -> _Done:
        try:
            return getattr(self, f"_{step.kind}")(step)
        except _StepUnavailable as why:
            return _Done({}, {"why": str(why)}, "unavailable")

    def _fetch(self, step: Step) -> _Done:
        entry = self.manifest_entry(step)
        fetched = fetch_proteome(
            entry.source,
            self.atlas.download_cache(),
            self.options.fetch,
            expected_sha256=entry.sha256,
            reuse=not self.options.refresh_sources,
        )
        _write_json(
            self.atlas.source_record(entry.name), {"species": entry.name, "orthovec": __version__, **fetched.to_dict()}
        )
        info = {"records": fetched.n_records, "sha256": fetched.sha256, "url": fetched.url}
        return _Done({"fasta": Path(fetched.path)}, info)

    def _proteins(self, step: Step) -> _Done:
        """The species' proteins table (and its report): what alignment reads, embedded or not."""
        from orthovec.indexer.pipeline import IndexConfig
        from orthovec.indexing import index_proteome

        entry = self.manifest_entry(step)
        config = IndexConfig(
            fasta=self._output(f"fetch:{entry.name}", "fasta"),
            species=entry.name,
            atlas=self.atlas,
            embed=False,
            taxid=entry.taxid,
            gene_map=entry.gene_map,
            unresolved=entry.unresolved,
            # the index step that follows replaces vectors of an earlier proteome
            embedding_follows=self.manifest.embeds(entry.name),
            # array tasks register the same proteins side by side: each takes its turn
            lock_wait_s=PROTEINS_LOCK_WAIT_S if self.options.shard else 0.0,
        )
        result = index_proteome(config, search_database=False)
        info = {
            "proteins": result.read.n_proteins,
            "genes": result.n_genes,
            "records": result.read.n_records,
            "skipped": dict(result.read.skipped),
        }
        return _Done({"proteins": self.atlas.proteins(entry.name)}, info)

    def _database(self, step: Step) -> _Done:
        """The species' MMseqs2 search database, built once for all its pairs (and sequence queries)."""
        try:
            from orthovec.lookup.homology.databases import MANIFEST, ensure_database
        except ImportError as err:
            raise _StepUnavailable(f"sequence alignment is not part of this install ({err})") from None
        try:
            root = ensure_database(self.atlas, step.species[0], threads=self.manifest.atlas.align_threads)
        except Unavailable as err:  # e.g. no mmseqs binary: the build still maps on embeddings
            raise _StepUnavailable(str(err)) from None
        return _Done({"database": root / MANIFEST}, {})

    def _index(self, step: Step) -> _Done:
        from orthovec.indexer.pipeline import IndexConfig
        from orthovec.indexing import index_proteome

        entry, settings = self.manifest_entry(step), self.manifest.atlas
        config = IndexConfig(
            fasta=self._output(f"fetch:{entry.name}", "fasta"),
            species=entry.name,
            atlas=self.atlas,
            model=settings.model,
            weights=settings.weights,
            taxid=entry.taxid,
            pooling=entry.pooling or settings.pooling,
            device=settings.device,
            toks_per_batch=settings.toks_per_batch,
            precision=settings.precision,
            long_seqs=settings.long_seqs,
            layer=settings.layer,
            shard=self.options.shard,
            gene_map=entry.gene_map,
            unresolved=entry.unresolved,
        )
        progress = self.events.embedding_progress
        with progress(entry.name) if progress else contextlib.nullcontext(None) as start:
            result = index_proteome(
                config,
                progress=start,
                qdrant_url=settings.qdrant_url,
                qdrant_api_key=self.options.qdrant_api_key,
                search_database=False,
            )
        if not result.complete:
            why = f"{result.chunks_missing} chunks wait for other shards" if result.chunks_missing else ""
            return _Done({}, {"why": why or f"{result.assembled_by} assembles it"}, "shard done")
        assert result.model is not None  # an index step embeds
        info = {"model": result.model, "genes": result.n_genes, "embedded": result.n_embedded_sequences}
        return _Done({"genes": self.atlas.genes(entry.name, result.model)}, info)

    def _align(self, step: Step) -> _Done:
        try:
            from orthovec.lookup.homology.align import align_species
        except ImportError as err:
            raise _StepUnavailable(
                f"sequence alignment is not part of this install ({err}); the mapping runs on embeddings alone"
            ) from None
        a, b = step.species
        settings = self.manifest.atlas
        # only what the manifest sets, so `orthovec align`'s own defaults hold otherwise
        sensitivity = {"sensitivity": settings.align_sensitivity} if settings.align_sensitivity is not None else {}
        try:
            path = align_species(self.atlas, a, b, threads=settings.align_threads, **sensitivity)
        except Unavailable as err:  # e.g. no mmseqs binary: the build still maps on embeddings
            raise _StepUnavailable(str(err)) from None
        return _Done({"alignment": Path(path)}, {})

    def _map(self, step: Step) -> _Done:
        from orthovec.lookup.homology.mapping import MappingParams, map_species

        a, b = step.species
        settings = self.manifest.atlas
        params = MappingParams(**settings.mapping)
        summary = map_species(self.atlas, [a, b], self._model(a, b), params)[0]
        info = {key: value for key, value in asdict(summary).items() if key not in ("path", "seconds")}
        return _Done({"mapping": Path(summary.path)}, info)

    def _groups(self, step: Step) -> _Done:
        from orthovec.lookup.homology.mapping import ALIGNMENT_MODEL, write_table_groups
        from orthovec.schemas.tables import MAPPING, read_table

        model = self._model(*step.species) or ALIGNMENT_MODEL
        tables = {
            (a, b): read_table(self._output(f"map:{a}__{b}", "mapping"), MAPPING) for a, b in self.manifest.pairs()
        }
        write_table_groups(self.atlas, model, list(step.species), tables)
        path = self.atlas.multi_mapping(model, list(step.species))
        if not path.is_file():
            return _Done({}, {"groups": 0})
        import pyarrow.parquet as pq

        return _Done({"groups": path}, {"groups": pq.ParquetFile(path).metadata.num_rows})

    def _output(self, step: str, label: str) -> Path:
        stamp = self.stamps.read(step)
        if stamp is None or label not in stamp.outputs:
            raise Invalid(f"{self.stamps.path(step)}: the {step} step left no {label}; run the build again.")
        return self.stamps.resolve(stamp.outputs[label])

    def _model(self, *species: str) -> str | None:
        """The embedding model the species share, or None when one of them is indexed for alignment only."""
        if not all(self.manifest.embeds(name) for name in species):
            return None
        stamps = [self.stamps.read(f"index:{name}") for name in species]
        found = {stamp.info["model"] for stamp in stamps if stamp is not None}
        if len(found) != 1:
            raise Invalid(f"The species of {self.manifest.path} were indexed with different models ({found}).")
        return str(found.pop())


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


def _with_step(err: BaseException, step: str) -> BaseException:
    """A user error keeps its kind and gains the step it happened in; a bug keeps its traceback."""
    if isinstance(err, UserError):
        kind = type(err)
        wrapped = kind(f"{step}: {err} (steps finished before it are kept; run the build again after fixing this)")
        wrapped.__cause__ = err
        return wrapped
    return err
