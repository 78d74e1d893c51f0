"""Building the car index: full builds into a new collection version, incremental updates of
the live collection. The alias rules are in ``indexer.versions``; the engine does the I/O.

What a collection should hold is the gallery's usable photos plus the cars added through the
API (``indexer.uploads``), minus what was deleted through the API, with payloads as the gallery
describes them now. Point ids come from image contents, so an interrupted build is resumed by
writing only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from carembed.embedder import Embedder
from indexer.dataset_export import GALLERY_ROOT_KEY
from indexer.engine import Engine, NewPoint, StoreError
from indexer.fields import FieldSchema
from indexer.gallery import GalleryItem, GalleryScan, scan_gallery
from indexer.gate import GATE_KEY
from indexer.payload import (
    CarPayload,
    StoredCar,
    changed_fields,
    edited,
    gallery_payload,
    record_fields,
    reindexed,
)
from indexer.uploads import Upload, UploadLedger
from indexer.versions import (
    model_version_of,
    new_collection_name,
    stale_collections,
    unfinished_build,
)
from indexer.writes import (
    BatchHook,
    IndexReport,
    Todo,
    apply_edits,
    sync_uploads,
    upload_todo,
    write,
)

logger = logging.getLogger(__name__)

SKIPPED_KEY = "carsearch_skipped_sha256"
MODEL_KEY = "carsearch_model_version"
GALLERY_KEY = "carsearch_gallery_digest"


class IndexBuildError(RuntimeError):
    """The index could not be built or changed; the live collection is untouched."""


@dataclass(frozen=True)
class _Plan:
    """What a collection should hold."""

    items: list[GalleryItem]  # the gallery's photos, less those deleted through the API
    uploads: dict[str, Upload]  # id -> car added through the API, still there (edited)
    tombstones: set[str]
    edits: dict[str, dict[str, Any]]  # id -> the car's edit
    schema: FieldSchema

    @classmethod
    def of(cls, scan: GalleryScan, ledger: UploadLedger | None, schema: FieldSchema) -> _Plan:
        dead = ledger.tombstones() if ledger else set()
        items = [i for i in scan.items if i.id not in dead]
        in_gallery = {i.id for i in items}
        uploads = {
            u.id: u
            for u in (ledger.uploads() if ledger else [])
            if u.id not in dead and u.id not in in_gallery
        }
        return cls(items, uploads, dead, ledger.edits() if ledger else {}, schema)

    def fields(self, item: GalleryItem) -> dict[str, Any]:
        """A gallery photo's payload fields: its record's, with its edit applied."""
        return edited(record_fields(item.record, self.schema), self.edits.get(item.id))


def _digest(scan: GalleryScan, schema: FieldSchema) -> str:
    """What the gallery says, as one hash: photos, paths and the metadata of each."""
    rows = sorted((i.id, record_fields(i.record, schema)) for i in scan.items)
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def _gallery_todo(item: GalleryItem, fields: dict[str, Any], version: str) -> Todo:
    return Todo(
        item.id,
        item.record.path,
        item.record.relative,
        lambda size: gallery_payload(fields, item.sha256, size, version),
    )


def _unchanged(
    engine: Engine, live: str, scan: GalleryScan, ledger: UploadLedger | None, schema: FieldSchema
) -> list[GalleryItem] | None:
    """If ``live`` holds exactly what it should (the gallery as it was described when it was
    built, the uploads, none of the deleted): the gallery items recorded as unusable. Else
    None."""
    metadata = engine.metadata(live)
    if SKIPPED_KEY not in metadata or metadata.get(GALLERY_KEY) != _digest(scan, schema):
        return None
    plan = _Plan.of(scan, ledger, schema)
    recorded = set(metadata[SKIPPED_KEY])
    stored = dict(engine.scroll(live, ["source"]))
    gallery = {pid for pid, p in stored.items() if p.get("source") == "gallery"}
    if gallery != {i.id for i in plan.items if i.sha256 not in recorded}:
        return None
    if not set(plan.uploads) <= set(stored) or plan.tombstones & set(stored):
        return None
    return [i for i in plan.items if i.sha256 in recorded]


def _check_failures(report: IndexReport, max_share: float, alias: str, live: str | None) -> None:
    if report.failure_share > max_share:
        raise IndexBuildError(
            f"{len(report.skipped)} of the gallery's files could not be used "
            f"({report.failure_share:.1%} > {max_share:.1%}); the alias {alias!r} "
            f"still points to {live}."
        )


PayloadFor = Callable[[StoredCar], CarPayload]


def _copy(engine: Engine, source: str, target: str, payloads: dict[str, PayloadFor]) -> None:
    """Copy vectors between collections of the same model version, with the payloads given."""
    ids = list(payloads)
    for start in range(0, len(ids), 256):
        cars = engine.retrieve(source, ids[start : start + 256], with_vectors=True)
        engine.upsert(
            target,
            [NewPoint(c.id, c.vector, payloads[c.id](c)) for c in cars if c.vector is not None],
        )


def _size(car: StoredCar) -> tuple[int, int]:
    return (car.payload.width or 0, car.payload.height or 0)


def _copied_gallery(
    item: GalleryItem, fields: dict[str, Any], version: str, car: StoredCar
) -> CarPayload:
    return gallery_payload(fields, item.sha256, _size(car), version)


def _copied_upload(upload: Upload, version: str, car: StoredCar) -> CarPayload:
    return reindexed(upload.payload, _size(car), version)


def _sync(
    engine: Engine,
    collection: str,
    embedder: Embedder,
    scan: GalleryScan,
    ledger: UploadLedger | None,
    schema: FieldSchema,
    *,
    num_workers: int,
    on_batch: BatchHook | None,
    progress: bool,
    reuse_from: str | None = None,
) -> tuple[IndexReport, set[str]]:
    """Make ``collection`` hold what it should (see the module's docstring). Vectors of
    unchanged photos are copied from ``reuse_from`` (a collection of the same model version)
    instead of being embedded again. Returns the report and the ids that should be there."""
    start = time.perf_counter()
    version = embedder.version
    report = IndexReport(collection, duplicates=len(scan.duplicates), skipped=list(scan.unreadable))
    plan = _Plan.of(scan, ledger, schema)
    existing: dict[str, dict[str, Any]] = dict(engine.scroll(collection, None))
    wanted = {i.id for i in plan.items} | set(plan.uploads)
    # Upload points the ledger has no record of: kept (never dropped silently) unless deleted.
    wanted |= {
        pid
        for pid, p in existing.items()
        if p.get("source") == "upload" and pid not in plan.tombstones
    }
    todos = [_gallery_todo(i, plan.fields(i), version) for i in plan.items if i.id not in existing]
    todos += [upload_todo(u, version) for u in plan.uploads.values() if u.id not in existing]
    copies: dict[str, PayloadFor] = {}
    if reuse_from is not None:
        reusable = {pid: p.get("source") for pid, p in engine.scroll(reuse_from, ["source"])}
        for item in plan.items:
            if item.id not in existing and reusable.get(item.id) == "gallery":
                copies[item.id] = partial(_copied_gallery, item, plan.fields(item), version)
        for upload in plan.uploads.values():
            if upload.id not in existing and upload.id in reusable:
                copies[upload.id] = partial(_copied_upload, upload, version)
        for pid, source in reusable.items():
            if source == "upload" and pid not in existing and pid not in plan.tombstones:
                copies.setdefault(pid, lambda car: car.payload)  # an upload the ledger lacks
                wanted.add(pid)
        _copy(engine, reuse_from, collection, copies)
        todos = [t for t in todos if t.id not in copies]
    report.unchanged = len(plan.items) - sum(1 for t in todos if t.id not in plan.uploads)
    for item in plan.items:
        if item.id in existing and (
            changes := changed_fields(existing[item.id], plan.fields(item))
        ):
            engine.set_payload(collection, item.id, changes)
            report.updated += 1
    write(engine, collection, embedder, todos, report, num_workers, on_batch, progress)
    skipped = {label for label, _ in report.skipped + report.skipped_uploads}
    wanted -= {t.id for t in todos if t.label in skipped}
    for label, reason in report.skipped_uploads:  # deleted meanwhile, or unreadable
        logger.warning("upload %s not indexed: %s", label, reason)
    engine.set_metadata(
        collection,
        {
            MODEL_KEY: version,
            GALLERY_KEY: _digest(scan, schema),
            SKIPPED_KEY: sorted(i.sha256 for i in plan.items if i.id not in wanted),
            GALLERY_ROOT_KEY: str(scan.root),
        },
    )
    gone = [pid for pid in existing if pid not in wanted]
    engine.delete(collection, gone)
    report.deleted = len(gone)
    report.total_points = engine.count(collection)
    report.seconds = time.perf_counter() - start
    return report, wanted


def _reusable_live(engine: Engine, live: str | None, version: str) -> str | None:
    """The live collection when it holds this model's vectors and this process can read it."""
    if live is None or model_version_of(live) != version:
        return None
    try:
        engine.count(live)
    except StoreError as exc:
        logger.warning("%s: its vectors are not reused, every photo is embedded again", exc)
        return None
    return live


def build_full(
    engine: Engine,
    embedder: Embedder,
    gallery: Path,
    alias: str,
    ledger: UploadLedger | None = None,
    schema: FieldSchema | None = None,
    *,
    num_workers: int = 0,
    max_failure_share: float = 0.05,
    on_batch: BatchHook | None = None,
    progress: bool = True,
    on_moved: Callable[[], None] | None = None,
    gate: Callable[[str, str], dict[str, Any]] | None = None,
) -> IndexReport:
    """Index the whole gallery (and the ledger's uploads) into a new collection, then move
    ``alias`` to it atomically (``on_moved`` runs then, before old collections are dropped).
    When the live collection holds another model's vectors, ``gate(live, new)`` runs before
    the move: it raises to keep the alias where it is (the new collection stays, for
    inspection), or returns its verdict, kept in the new collection's metadata."""
    started = time.perf_counter()
    schema = schema or FieldSchema({})
    scan = scan_gallery(gallery)
    state = engine.alias_state(alias)
    reuse = _reusable_live(engine, state.live, embedder.version)
    unusable = _unchanged(engine, reuse, scan, ledger, schema) if reuse is not None else None
    if reuse is not None and unusable is not None:
        logger.info("nothing changed since %s was built: it stays live", reuse)
        skipped = [(i.record.relative, "unusable (recorded when it was indexed)") for i in unusable]
        report = IndexReport(
            reuse,
            unchanged=len(scan.items) - len(unusable),
            duplicates=len(scan.duplicates),
            skipped=list(scan.unreadable) + skipped,
            total_points=engine.count(reuse),
            seconds=time.perf_counter() - started,
        )
        _check_failures(report, max_failure_share, alias, state.live)
        return report
    target = unfinished_build(alias, embedder.version, engine.collections(), state)
    if target is None:
        target = new_collection_name(alias, embedder.version)
        engine.create(target, embedder.dim, bulk=True)
        logger.info("building collection %s", target)
    else:
        logger.info("resuming the interrupted build of %s", target)
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
        reuse_from=reuse,
    )
    if report.total_points != len(wanted):
        raise IndexBuildError(
            f"{target} holds {report.total_points} points, expected {len(wanted)}; "
            f"the alias {alias!r} still points to {state.live}"
        )
    _check_failures(report, max_failure_share, alias, state.live)
    if ledger is not None:  # cars added or deleted through the API while this build ran
        added, deleted = sync_uploads(engine, target, embedder, ledger)
        report.indexed, report.deleted = report.indexed + added, report.deleted + deleted
    if state.live is not None and model_version_of(state.live) != embedder.version and gate:
        verdict = gate(state.live, target)
        engine.set_metadata(target, engine.metadata(target) | {GATE_KEY: verdict})
    engine.seal(target)
    after = state.promoted(target)
    engine.move_aliases(state, after)
    logger.info("alias %s -> %s (previous: %s)", alias, target, after.previous)
    if on_moved is not None:
        on_moved()
    for name in stale_collections(alias, engine.collections(), after):
        logger.info("deleting old collection %s", name)
        engine.drop(name)
    report.total_points = engine.count(target)
    report.seconds = time.perf_counter() - started
    return report


def ensure_live(engine: Engine, alias: str, embedder: Embedder) -> str:
    """The live collection; a new empty one behind the alias if there is none yet (so that a
    first index can be searched while it fills)."""
    state = engine.alias_state(alias)
    if state.live is not None:
        return state.live
    live = new_collection_name(alias, embedder.version)
    engine.create(live, embedder.dim)
    engine.move_aliases(state, state.promoted(live))
    return live


def update_incremental(
    engine: Engine,
    embedder: Embedder,
    gallery: Path,
    alias: str,
    ledger: UploadLedger | None = None,
    schema: FieldSchema | None = None,
    *,
    num_workers: int = 0,
    on_batch: BatchHook | None = None,
    progress: bool = True,
) -> IndexReport:
    """Add new files to the live collection, delete points whose files are gone, bring changed
    payloads up to date, skip the rest. What was added is searchable at once, and indexed
    (HNSW) before this returns."""
    live = engine.alias_state(alias).live
    if live is None:
        raise IndexBuildError(f"no collection behind the alias {alias!r}: run a full build first")
    version = model_version_of(live)
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
    )
    if ledger is not None:  # a full build applies them in its last step, sync_uploads
        apply_edits(engine, live, ledger)
    if report.indexed or report.deleted:
        engine.optimize(live)
    return report
