"""Building the car index: full builds into a new collection version, incremental updates of
the live collection. The alias rules are in ``indexer.versions``; the engine does the I/O.

What a collection should hold is the gallery's usable photos plus the cars added through the
API (``indexer.ledger``), minus what was deleted through the API, with payloads as the gallery
describes them now. Point ids come from image contents, so an interrupted build is resumed by
writing only what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carembed.calibration import DENSITY_K
from carembed.embedder import Embedder
from indexer import store_format
from indexer.build_plan import (
    GALLERY_KEY,
    GALLERY_ROOT_KEY,
    SKIPPED_KEY,
    Desired,
    PayloadFor,
    gallery_digest,
    plan_sync,
    still_current,
)
from indexer.covers import settle_all
from indexer.density import DENSITIES_KEY, refresh_densities
from indexer.engines.base import CollectionHeld, Engine, NewPoint, StoreError, VectorStore
from indexer.fields import FieldSchema
from indexer.gallery import GalleryItem, GalleryScan, scan_gallery
from indexer.gate import GATE_KEY
from indexer.go_live import go_live
from indexer.ledger import Ledger
from indexer.reconcile import Reconciled
from indexer.served import ServedCollections
from indexer.versions import (
    AliasState,
    embedding_version_of,
    new_collection_name,
    unfinished_build,
)
from indexer.writes import BatchHook, IndexReport, write

logger = logging.getLogger(__name__)


Join = Callable[[str, Embedder], Reconciled]
"""Brings a collection up to date with the ledger and makes writes reach it."""


class IndexBuildError(RuntimeError):
    """The index could not be built or changed; the live collection is untouched."""


def _unchanged(
    engine: VectorStore,
    live: str,
    scan: GalleryScan,
    ledger: Ledger | None,
    schema: FieldSchema,
) -> list[GalleryItem] | None:
    """If ``live`` holds exactly what it should (the gallery as it was described when it was
    built, the uploads, none of the deleted): the gallery items recorded as unusable. Else
    None."""
    metadata = engine.metadata(live)
    if SKIPPED_KEY not in metadata or metadata.get(GALLERY_KEY) != gallery_digest(scan, schema):
        return None
    if metadata.get(DENSITIES_KEY) != DENSITY_K:  # built before densities, or of another k
        return None
    desired = Desired.of(scan, ledger, schema)
    recorded = set(metadata[SKIPPED_KEY])
    stored = {pid: p.get("source") for pid, p in engine.scroll(live, ["source"])}
    if not still_current(desired, stored, recorded):
        return None
    return [i for i in desired.items if i.sha256 in recorded]


def _check_failures(report: IndexReport, max_share: float, alias: str, live: str | None) -> None:
    if report.failure_share > max_share:
        raise IndexBuildError(
            f"{len(report.skipped)} of the gallery's files could not be used "
            f"({report.failure_share:.1%} > {max_share:.1%}); the alias {alias!r} "
            f"still points to {live}."
        )


def _copy(engine: VectorStore, source: str, target: str, payloads: dict[str, PayloadFor]) -> None:
    """Copy vectors between collections of the same embedding version, with the payloads
    given."""
    ids = list(payloads)
    for start in range(0, len(ids), 256):
        cars = engine.retrieve(source, ids[start : start + 256], with_vectors=True)
        engine.upsert(
            target,
            [NewPoint(c.id, c.vector, payloads[c.id](c)) for c in cars if c.vector is not None],
        )


def _sync(
    engine: VectorStore,
    collection: str,
    embedder: Embedder,
    scan: GalleryScan,
    ledger: Ledger | None,
    schema: FieldSchema,
    *,
    num_workers: int,
    on_batch: BatchHook | None,
    progress: bool,
    densities: bool,
    reuse_from: str | None = None,
) -> tuple[IndexReport, set[str]]:
    """Carry out the plan (``indexer.build_plan``) that makes ``collection`` hold what it
    should. Vectors of unchanged photos are copied from ``reuse_from`` (a collection of the same
    embedding version) instead of being embedded again; ``densities``: points written get
    their densities among those there. Returns the report and the ids that should be there."""
    start = time.perf_counter()
    report = IndexReport(collection, duplicates=len(scan.duplicates), skipped=list(scan.unreadable))
    desired = Desired.of(scan, ledger, schema)
    existing: dict[str, dict[str, Any]] = dict(engine.scroll(collection, None))
    reusable = None
    if reuse_from is not None:
        reusable = {pid: p.get("source") for pid, p in engine.scroll(reuse_from, ["source"])}
    plan = plan_sync(desired, existing, embedder.version, reusable)
    if reuse_from is not None:
        _copy(engine, reuse_from, collection, plan.copy)
    for pid, changes in plan.update.items():
        engine.set_payload(collection, pid, changes)
    report.unchanged, report.updated = plan.unchanged, len(plan.update)
    write(
        engine,
        collection,
        embedder,
        plan.embed,
        report,
        num_workers,
        on_batch,
        progress,
        densities=densities,
    )
    skipped = {label for label, _ in report.skipped + report.skipped_uploads}
    failed = {t.id for t in plan.embed if t.label in skipped}
    for label, reason in report.skipped_uploads:  # deleted meanwhile, or unreadable
        logger.warning("upload %s not indexed: %s", label, reason)
    wanted = plan.keep - failed
    engine.set_metadata(
        collection,
        engine.metadata(collection)
        | {
            GALLERY_KEY: gallery_digest(scan, schema),
            SKIPPED_KEY: sorted(i.sha256 for i in desired.items if i.id not in wanted),
            GALLERY_ROOT_KEY: str(scan.root),
        },
    )
    gone = plan.deletes(existing, failed)
    engine.delete(collection, gone)
    report.deleted = len(gone)
    settle_all(engine, collection, ledger.writing if ledger is not None else None)
    report.total_points = engine.count(collection)
    report.seconds = time.perf_counter() - start
    return report, wanted


def _reusable_live(engine: VectorStore, live: str | None, version: str) -> str | None:
    """The live collection when it holds this model's vectors, of this store format, and this
    process can read it."""
    if live is None or embedding_version_of(live) != version:
        return None
    try:
        store_format.check(live, engine.metadata(live))
        engine.count(live)
    except StoreError as exc:
        logger.warning("%s: its vectors are not reused, every photo is embedded again", exc)
        return None
    return live


def _held(engine: VectorStore, name: str) -> bool:
    """Whether another process holds the collection (a service that has not let go of it)."""
    try:
        engine.count(name)
    except CollectionHeld:
        return True
    return False


def _judged(engine: VectorStore, live: str, version: str) -> bool:
    """Whether a build of ``version`` replacing ``live`` goes past the quality gate: when the
    live collection holds other vectors that a service can serve. One written by an older
    carsearch cannot be served any more: anything beats it."""
    live_version = embedding_version_of(live)
    if live_version is None or live_version == version:
        return False
    if store_format.is_older(engine.metadata(live)):
        logger.info("%s: replaced without the quality gate", store_format.OlderStore(live))
        return False
    return True


def build_full(
    engine: Engine,
    embedder: Embedder,
    gallery: Path,
    alias: str,
    ledger: Ledger | None = None,
    schema: FieldSchema | None = None,
    *,
    num_workers: int = 0,
    max_failure_share: float = 0.05,
    on_batch: BatchHook | None = None,
    progress: bool = True,
    on_moved: Callable[[], None] | None = None,
    gate: Callable[[str, str], dict[str, Any]] | None = None,
    served: ServedCollections | None = None,
) -> IndexReport:
    """Index the whole gallery (and the ledger's uploads) into a new collection, then move
    ``alias`` to it atomically (``on_moved`` runs then, before old collections are dropped).
    When the live collection holds another model's vectors, ``gate(live, new)`` runs before
    the move: it raises to keep the alias where it is (the new collection stays, for
    inspection), or returns its verdict, kept in the new collection's metadata. ``served``
    brings the new collection up to date with the ledger after the bulk writes and makes this
    process's writes reach it (``ServedCollections.join``); again, with no write running, as
    the alias moves (``ServedCollections.switching``)."""
    started = time.perf_counter()
    schema = schema or FieldSchema({})
    scan = scan_gallery(gallery)
    state = engine.aliases.state(alias)
    reuse = _reusable_live(engine, state.live, embedder.version)
    unusable = _unchanged(engine, reuse, scan, ledger, schema) if reuse is not None else None
    if reuse is not None and unusable is not None:
        logger.info("nothing changed since %s was built: it stays live", reuse)
        report = _kept(engine, reuse, scan, unusable, started)
        _check_failures(report, max_failure_share, alias, state.live)
        return report
    target = _target(engine, alias, embedder, state)
    report, wanted = _sync(
        engine,
        target,
        embedder,
        scan,
        ledger,
        schema,
        num_workers=num_workers,
        on_batch=on_batch,
        progress=progress,
        densities=False,
        reuse_from=reuse,
    )
    refresh_densities(engine, target)  # every point among all the others, before it serves
    engine.set_metadata(target, engine.metadata(target) | {DENSITIES_KEY: DENSITY_K})
    stored = {pid for pid, _ in engine.scroll(target, ["source"])}
    dead = ledger.tombstones() if ledger is not None else set()
    if lost := wanted - stored - dead:  # what it should hold, less what was deleted meanwhile
        raise IndexBuildError(
            f"{target} lacks {len(lost)} of the {len(wanted)} cars it should hold; "
            f"the alias {alias!r} still points to {state.live}"
        )
    _check_failures(report, max_failure_share, alias, state.live)
    if served is not None:  # cars added, edited or deleted through the API while this ran
        _count_caught_up(report, served.join(target, embedder))
    if gate and state.live is not None and _judged(engine, state.live, embedder.version):
        verdict = gate(state.live, target)
        engine.set_metadata(target, engine.metadata(target) | {GATE_KEY: verdict})
    engine.optimize(target)
    caught_up, report.total_points = go_live(engine, state, target, embedder, served, on_moved)
    _count_caught_up(report, caught_up)
    report.seconds = time.perf_counter() - started
    return report


def _count_caught_up(report: IndexReport, caught_up: Reconciled) -> None:
    report.indexed += caught_up.added
    report.deleted += caught_up.deleted


def _kept(
    engine: VectorStore,
    live: str,
    scan: GalleryScan,
    unusable: list[GalleryItem],
    started: float,
) -> IndexReport:
    """The report of a build that found ``live`` holding what it should: it stays."""
    skipped = [(i.record.relative, "unusable (recorded when it was indexed)") for i in unusable]
    return IndexReport(
        live,
        unchanged=len(scan.items) - len(unusable),
        duplicates=len(scan.duplicates),
        skipped=list(scan.unreadable) + skipped,
        total_points=engine.count(live),
        seconds=time.perf_counter() - started,
    )


def _target(engine: Engine, alias: str, embedder: Embedder, state: AliasState) -> str:
    """The collection a full build writes: an interrupted build of these vectors, of this
    store format, that no other process holds (resumed), or a new one."""
    target = unfinished_build(alias, embedder.version, engine.collections(), state)
    if (
        target is not None
        and not _held(engine, target)
        and not store_format.is_older(engine.metadata(target))
    ):
        logger.info("resuming the interrupted build of %s", target)
        return target
    target = new_collection_name(alias, embedder.version)
    engine.create(target, embedder.dim, bulk=True)
    logger.info("building collection %s", target)
    return target


def ensure_live(engine: Engine, alias: str, embedder: Embedder) -> str:
    """The live collection; a new empty one behind the alias if there is none yet (so that a
    first index can be searched while it fills)."""
    state = engine.aliases.state(alias)
    if state.live is not None:
        return state.live
    live = new_collection_name(alias, embedder.version)
    engine.create(live, embedder.dim)
    engine.aliases.move(state, state.promoted(live))
    return live


def update_incremental(
    engine: Engine,
    embedder: Embedder,
    gallery: Path,
    alias: str,
    ledger: Ledger | None = None,
    schema: FieldSchema | None = None,
    *,
    num_workers: int = 0,
    on_batch: BatchHook | None = None,
    progress: bool = True,
    join: Join | None = None,
) -> IndexReport:
    """Add new files to the live collection, delete points whose files are gone, bring changed
    payloads up to date, skip the rest. What was added is searchable at once, and indexed
    (HNSW) before this returns."""
    live = engine.aliases.state(alias).live
    if live is None:
        raise IndexBuildError(f"no collection behind the alias {alias!r}: run a full build first")
    store_format.check(live, engine.metadata(live))
    version = embedding_version_of(live)
    if version != embedder.version:
        raise IndexBuildError(
            f"the live collection {live} was built with model {version or 'unknown'}, this "
            f"model is {embedder.version}: vectors of two models cannot be mixed; run a full "
            "build (without --incremental)"
        )
    report, _ = _sync(
        engine,
        live,
        embedder,
        scan_gallery(gallery),
        ledger,
        schema or FieldSchema({}),
        num_workers=num_workers,
        on_batch=on_batch,
        progress=progress,
        densities=True,
    )
    if join is not None:  # a full build does this in its last step
        caught_up = join(live, embedder)
        report.indexed, report.deleted = (
            report.indexed + caught_up.added,
            report.deleted + caught_up.deleted,
        )
    if report.indexed or report.deleted:
        engine.optimize(live)
    return report
