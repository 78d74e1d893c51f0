"""Building the car index: full builds into a new collection version, incremental updates of
the live collection. The alias rules are in ``indexer.versions``; the engine does the I/O.

An interrupted build of the same model version is resumed: point ids come from image
contents, so a re-run writes only what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from carembed.embedder import Embedder
from indexer.engine import Engine, NewPoint, StoreError
from indexer.gallery import GalleryItem, GalleryScan, scan_gallery
from indexer.payload import gallery_payload
from indexer.versions import (
    model_version_of,
    new_collection_name,
    stale_collections,
    unfinished_build,
)

logger = logging.getLogger(__name__)

SKIPPED_KEY = "carsearch_skipped_sha256"
MODEL_KEY = "carsearch_model_version"

BatchHook = Callable[[int, int], None]
"""Called after each written batch with (files done, files to do)."""


class IndexBuildError(RuntimeError):
    """The index could not be built or changed; the live collection is untouched."""


@dataclass
class IndexReport:
    collection: str
    indexed: int = 0
    unchanged: int = 0
    deleted: int = 0
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    total_points: int = 0
    seconds: float = 0.0

    @property
    def failure_share(self) -> float:
        attempted = self.indexed + self.unchanged + len(self.skipped)
        return len(self.skipped) / attempted if attempted else 0.0


class _Stored(NamedTuple):
    source: str | None  # "gallery" or "upload"
    path: str | None


def _existing_points(engine: Engine, collection: str) -> dict[str, _Stored]:
    """id -> (payload ``source``, ``path``) of every point in the collection."""
    return {
        pid: _Stored(payload.get("source"), payload.get("path"))
        for pid, payload in engine.scroll(collection, ["source", "path"])
    }


def _unchanged(engine: Engine, live: str, scan: GalleryScan) -> list[GalleryItem] | None:
    """If ``live`` holds exactly this gallery (the same files at the same paths, the unusable
    ones as recorded when it was built): those unusable items. Else None."""
    metadata = engine.metadata(live)
    if SKIPPED_KEY not in metadata:
        return None
    recorded = set(metadata[SKIPPED_KEY])
    wanted = {(i.id, i.record.relative) for i in scan.items if i.sha256 not in recorded}
    stored = {
        (pid, p.path) for pid, p in _existing_points(engine, live).items() if p.source == "gallery"
    }
    return [i for i in scan.items if i.sha256 in recorded] if wanted == stored else None


def _check_failures(report: IndexReport, max_share: float, alias: str, live: str | None) -> None:
    if report.failure_share > max_share:
        raise IndexBuildError(
            f"{len(report.skipped)} of the gallery's files could not be used "
            f"({report.failure_share:.1%} > {max_share:.1%}); the alias {alias!r} "
            f"still points to {live}."
        )


def _write(
    engine: Engine,
    collection: str,
    embedder: Embedder,
    items: list[GalleryItem],
    report: IndexReport,
    num_workers: int,
    on_batch: BatchHook | None,
    progress: bool,
) -> None:
    """Embed ``items`` and upsert them batch by batch; unusable files go to ``report.skipped``.

    A batch is written in a writer thread while the next one is embedded; each batch is
    confirmed (``on_batch``) once its write has completed, so an interrupted run has written
    every batch it reported.
    """
    from tqdm import tqdm

    paths = [item.record.path for item in items]
    done = 0

    def upsert(points: list[NewPoint], files: int) -> int:
        engine.upsert(collection, points)
        return files

    def confirm(write: Future[int]) -> None:
        nonlocal done
        files = write.result()
        done += files
        bar.update(files)
        if on_batch is not None:
            on_batch(done, len(items))

    with (
        tqdm(total=len(items), unit="img", desc="indexing", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="upsert") as writer,
    ):
        pending: Future[int] | None = None
        for batch in embedder.embed_files(paths, num_workers=num_workers):
            for index, reason in batch.failures:
                report.skipped.append((items[index].record.relative, reason))
            points = [
                NewPoint(
                    items[index].id,
                    vector,
                    gallery_payload(
                        items[index].record, items[index].sha256, size, embedder.version
                    ),
                )
                for index, vector, size in zip(
                    batch.indices, batch.vectors, batch.sizes, strict=True
                )
            ]
            report.indexed += len(points)
            if pending is not None:
                confirm(pending)
            pending = writer.submit(upsert, points, len(batch.indices) + len(batch.failures))
        if pending is not None:
            confirm(pending)


def _copy(engine: Engine, source: str, target: str, ids: list[str]) -> None:
    """Copy points (vector and payload) between collections of the same model version."""
    for start in range(0, len(ids), 256):
        cars = engine.retrieve(source, ids[start : start + 256], with_vectors=True)
        engine.upsert(
            target, [NewPoint(car.id, car.vector, car.payload) for car in cars if car.vector]
        )


def _sync(
    engine: Engine,
    collection: str,
    embedder: Embedder,
    scan: GalleryScan,
    *,
    num_workers: int,
    on_batch: BatchHook | None,
    progress: bool,
    reuse_from: str | None = None,
) -> tuple[IndexReport, set[str]]:
    """Make ``collection`` hold exactly the gallery's usable images (uploads are kept).
    Vectors of unchanged images are copied from ``reuse_from`` (a collection of the same model
    version) instead of being embedded again. Returns the report and the ids that should be
    there."""
    start = time.perf_counter()
    report = IndexReport(collection, duplicates=len(scan.duplicates), skipped=list(scan.unreadable))
    existing = _existing_points(engine, collection)
    wanted = {item.id for item in scan.items}
    todo = [item for item in scan.items if item.id not in existing]
    if reuse_from is not None:
        reusable = _existing_points(engine, reuse_from)
        copied = [
            item.id
            for item in todo
            if item.id in reusable and reusable[item.id].source == "gallery"
        ]
        # Cars added through the API have no gallery file: same model, so their vectors move too.
        uploads = [
            pid for pid, p in reusable.items() if p.source == "upload" and pid not in existing
        ]
        _copy(engine, reuse_from, collection, copied + uploads)
        wanted.update(uploads)
        copied_ids = set(copied)
        todo = [item for item in todo if item.id not in copied_ids]
    report.unchanged = len(scan.items) - len(todo)
    wanted.update(pid for pid, p in existing.items() if p.source == "upload")  # kept as they are
    _write(engine, collection, embedder, todo, report, num_workers, on_batch, progress)
    skipped_paths = {path for path, _ in report.skipped}
    wanted -= {item.id for item in todo if item.record.relative in skipped_paths}
    engine.set_metadata(
        collection,
        {
            MODEL_KEY: embedder.version,
            SKIPPED_KEY: sorted(i.sha256 for i in scan.items if i.id not in wanted),
        },
    )
    gone = [pid for pid, p in existing.items() if pid not in wanted and p.source == "gallery"]
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
    *,
    num_workers: int = 0,
    max_failure_share: float = 0.05,
    on_batch: BatchHook | None = None,
    progress: bool = True,
) -> IndexReport:
    """Index the whole gallery into a new collection, then move ``alias`` to it atomically."""
    started = time.perf_counter()
    scan = scan_gallery(gallery)
    state = engine.alias_state(alias)
    reuse = _reusable_live(engine, state.live, embedder.version)
    unusable = _unchanged(engine, reuse, scan) if reuse is not None else None
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
    engine.seal(target)
    after = state.promoted(target)
    engine.move_aliases(state, after)
    logger.info("alias %s -> %s (previous: %s)", alias, target, after.previous)
    for name in stale_collections(alias, engine.collections(), after):
        logger.info("deleting old collection %s", name)
        engine.drop(name)
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
    *,
    num_workers: int = 0,
    on_batch: BatchHook | None = None,
    progress: bool = True,
) -> IndexReport:
    """Add new files to the live collection, delete points whose files are gone, skip the rest.
    What was added is searchable at once, and indexed (HNSW) before this returns."""
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
        num_workers=num_workers,
        on_batch=on_batch,
        progress=progress,
    )
    if report.indexed or report.deleted:
        engine.optimize(live)
    return report
