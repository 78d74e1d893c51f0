"""Building the car index: full builds into a new versioned collection behind an alias,
incremental updates of the live collection, and rollback.

A full build writes a new collection (named from the alias, model version and time), verifies
the point count, then moves the alias in one atomic alias operation; the collection it replaces
stays behind the ``<alias>__previous`` alias for rollback, and older ones are deleted. An
interrupted build of the same model version is resumed: point ids come from image contents,
so a re-run writes only what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from carembed.embedder import Embedder
from carembed.store import (
    PREVIOUS_SUFFIX,
    collection_name,
    create_collection,
    parse_collection_name,
    resolve_alias,
)
from indexer.gallery import GalleryItem, GalleryScan, scan_gallery

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)

SKIPPED_KEY = "carsearch_skipped_sha256"

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


def payload_for(item: GalleryItem, size: tuple[int, int], model_version: str) -> dict[str, Any]:
    record = item.record
    return {
        **record.extra,
        "make": record.make,
        "model": record.model,
        "year": record.year,
        "body": record.body,
        "class_name": record.class_name,
        "path": record.relative,
        "sha256": item.sha256,
        "width": size[0],
        "height": size[1],
        "model_version": model_version,
        "indexed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": "gallery",
    }


class _Stored(NamedTuple):
    source: str | None  # "gallery" or "upload"
    path: str | None


def _existing_points(client: QdrantClient, collection: str) -> dict[str, _Stored]:
    """id -> (payload ``source``, ``path``) of every point in the collection."""
    points: dict[str, _Stored] = {}
    offset = None
    while True:
        batch, offset = client.scroll(
            collection,
            limit=1024,
            offset=offset,
            with_payload=["source", "path"],
            with_vectors=False,
        )
        for point in batch:
            payload = point.payload or {}
            points[str(point.id)] = _Stored(payload.get("source"), payload.get("path"))
        if offset is None:
            return points


def _record_skipped(client: QdrantClient, collection: str, shas: set[str]) -> None:
    """Remember which gallery files could not be used, so that a re-run knows nothing changed."""
    try:
        client.update_collection(collection, metadata={SKIPPED_KEY: sorted(shas)})
    except Exception as exc:  # an older server without collection metadata: only a shortcut lost
        logger.info("collection metadata not stored (%s)", type(exc).__name__)


def _unchanged(client: QdrantClient, live: str, scan: GalleryScan) -> list[GalleryItem] | None:
    """If ``live`` holds exactly this gallery (the same files at the same paths, the unusable
    ones as recorded when it was built): those unusable items. Else None."""
    try:
        metadata = client.get_collection(live).config.metadata or {}
    except Exception:
        return None
    if SKIPPED_KEY not in metadata:
        return None
    recorded = set(metadata[SKIPPED_KEY])
    wanted = {(i.id, i.record.relative) for i in scan.items if i.sha256 not in recorded}
    stored = {
        (pid, p.path) for pid, p in _existing_points(client, live).items() if p.source == "gallery"
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
    client: QdrantClient,
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
    from qdrant_client import models
    from tqdm import tqdm

    paths = [item.record.path for item in items]
    done = 0

    def upsert(points: list[models.PointStruct], files: int) -> int:
        if points:
            client.upsert(collection, points=points, wait=True)
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
                models.PointStruct(
                    id=items[index].id,
                    vector=vector.tolist(),
                    payload=payload_for(items[index], size, embedder.version),
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


def _delete(client: QdrantClient, collection: str, ids: Iterable[str]) -> int:
    from qdrant_client import models

    ids = list(ids)
    for start in range(0, len(ids), 1024):
        chunk: list[Any] = list(ids[start : start + 1024])
        client.delete(collection, points_selector=models.PointIdsList(points=chunk), wait=True)
    return len(ids)


def _copy(client: QdrantClient, source: str, target: str, ids: list[str]) -> None:
    """Copy points (vector and payload) between collections of the same model version."""
    from qdrant_client import models

    for start in range(0, len(ids), 256):
        records = client.retrieve(
            source, ids=ids[start : start + 256], with_payload=True, with_vectors=True
        )
        points = [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in records]
        client.upsert(target, points=points, wait=True)


def _sync(
    client: QdrantClient,
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
    existing = _existing_points(client, collection)
    wanted = {item.id for item in scan.items}
    todo = [item for item in scan.items if item.id not in existing]
    if reuse_from is not None:
        reusable = _existing_points(client, reuse_from)
        copied = [
            item.id
            for item in todo
            if item.id in reusable and reusable[item.id].source == "gallery"
        ]
        # Cars added through the API have no gallery file: same model, so their vectors move too.
        uploads = [
            pid for pid, p in reusable.items() if p.source == "upload" and pid not in existing
        ]
        _copy(client, reuse_from, collection, copied + uploads)
        wanted.update(uploads)
        copied_ids = set(copied)
        todo = [item for item in todo if item.id not in copied_ids]
    report.unchanged = len(scan.items) - len(todo)
    wanted.update(pid for pid, p in existing.items() if p.source == "upload")  # kept as they are
    _write(client, collection, embedder, todo, report, num_workers, on_batch, progress)
    skipped_paths = {path for path, _ in report.skipped}
    wanted -= {item.id for item in todo if item.record.relative in skipped_paths}
    _record_skipped(client, collection, {i.sha256 for i in scan.items if i.id not in wanted})
    gone = [pid for pid, p in existing.items() if pid not in wanted and p.source == "gallery"]
    report.deleted = _delete(client, collection, gone)
    report.total_points = client.count(collection, exact=True).count
    report.seconds = time.perf_counter() - start
    return report, wanted


def _resumable(client: QdrantClient, alias: str, version: str, keep: set[str]) -> str | None:
    """The newest unfinished build of this alias and model version, if a run was interrupted."""
    candidates = []
    for description in client.get_collections().collections:
        parsed = parse_collection_name(description.name)
        if parsed == (alias, version) and description.name not in keep:
            candidates.append(description.name)
    return max(candidates) if candidates else None


def build_full(
    client: QdrantClient,
    embedder: Embedder,
    gallery: Path,
    alias: str,
    *,
    num_workers: int = 0,
    max_failure_share: float = 0.05,
    collection_params: dict[str, Any] | None = None,
    on_batch: BatchHook | None = None,
    progress: bool = True,
) -> IndexReport:
    """Index the whole gallery into a new collection, then move ``alias`` to it atomically."""
    from qdrant_client import models

    started = time.perf_counter()
    scan = scan_gallery(gallery)
    live = resolve_alias(client, alias)
    previous = resolve_alias(client, alias + PREVIOUS_SUFFIX)
    live_parsed = parse_collection_name(live) if live else None
    reuse = live if live_parsed is not None and live_parsed[1] == embedder.version else None
    unusable = _unchanged(client, reuse, scan) if reuse is not None else None
    if reuse is not None and unusable is not None:
        logger.info("nothing changed since %s was built: it stays live", reuse)
        skipped = [(i.record.relative, "unusable (recorded when it was indexed)") for i in unusable]
        report = IndexReport(
            reuse,
            unchanged=len(scan.items) - len(unusable),
            duplicates=len(scan.duplicates),
            skipped=list(scan.unreadable) + skipped,
            total_points=client.count(reuse, exact=True).count,
            seconds=time.perf_counter() - started,
        )
        _check_failures(report, max_failure_share, alias, live)
        return report
    keep = {name for name in (live, previous) if name}
    target = _resumable(client, alias, embedder.version, keep)
    if target is None:
        target = collection_name(alias, embedder.version)
        create_collection(client, target, embedder.dim, **(collection_params or {}))
        logger.info("building collection %s", target)
    else:
        logger.info("resuming the interrupted build of %s", target)
    report, wanted = _sync(
        client,
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
            f"the alias {alias!r} still points to {live}"
        )
    _check_failures(report, max_failure_share, alias, live)
    operations: list[Any] = []
    if live:
        operations.append(
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        )
    operations.append(
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
        )
    )
    if live and live != target:
        if previous:
            operations.append(
                models.DeleteAliasOperation(
                    delete_alias=models.DeleteAlias(alias_name=alias + PREVIOUS_SUFFIX)
                )
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(
                    collection_name=live, alias_name=alias + PREVIOUS_SUFFIX
                )
            )
        )
    client.update_collection_aliases(change_aliases_operations=operations)
    logger.info("alias %s -> %s (previous: %s)", alias, target, live)
    for description in client.get_collections().collections:
        parsed = parse_collection_name(description.name)
        if parsed and parsed[0] == alias and description.name not in (target, live):
            logger.info("deleting old collection %s", description.name)
            client.delete_collection(description.name)
    return report


def ensure_live(
    client: QdrantClient,
    alias: str,
    embedder: Embedder,
    collection_params: dict[str, Any] | None = None,
) -> str:
    """The live collection; a new empty one behind the alias if there is none yet (so that a
    first index can be searched while it fills)."""
    from qdrant_client import models

    live = resolve_alias(client, alias)
    if live is None:
        live = collection_name(alias, embedder.version)
        create_collection(client, live, embedder.dim, **(collection_params or {}))
        client.update_collection_aliases(
            change_aliases_operations=[
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=live, alias_name=alias)
                )
            ]
        )
    return live


def update_incremental(
    client: QdrantClient,
    embedder: Embedder,
    gallery: Path,
    alias: str,
    *,
    num_workers: int = 0,
    on_batch: BatchHook | None = None,
    progress: bool = True,
) -> IndexReport:
    """Add new files to the live collection, delete points whose files are gone, skip the rest."""
    live = resolve_alias(client, alias)
    if live is None:
        raise IndexBuildError(f"no collection behind the alias {alias!r}: run a full build first")
    parsed = parse_collection_name(live)
    if parsed is None or parsed[1] != embedder.version:
        raise IndexBuildError(
            f"the live collection {live} was built with model "
            f"{parsed[1] if parsed else 'unknown'}, this model is {embedder.version}: "
            "vectors of two models cannot be mixed; run a full build (without --incremental)"
        )
    report, _ = _sync(
        client,
        live,
        embedder,
        scan_gallery(gallery),
        num_workers=num_workers,
        on_batch=on_batch,
        progress=progress,
    )
    return report


def rollback(client: QdrantClient, alias: str) -> str:
    """Swap the alias back to the previous collection (and the previous alias to the current)."""
    from qdrant_client import models

    live = resolve_alias(client, alias)
    previous = resolve_alias(client, alias + PREVIOUS_SUFFIX)
    if previous is None or live is None:
        raise IndexBuildError(f"no previous collection to roll back to for the alias {alias!r}")
    swap: list[Any] = [
        models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)),
        models.DeleteAliasOperation(
            delete_alias=models.DeleteAlias(alias_name=alias + PREVIOUS_SUFFIX)
        ),
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=previous, alias_name=alias)
        ),
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(
                collection_name=live, alias_name=alias + PREVIOUS_SUFFIX
            )
        ),
    ]
    client.update_collection_aliases(change_aliases_operations=swap)
    logger.info("alias %s -> %s (rolled back from %s)", alias, previous, live)
    return previous
