"""Writing cars into a collection: embedding photos batch by batch, as builds do."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from carembed.embedder import Embedder
from indexer.density import with_density
from indexer.engines.base import NewPoint, VectorStore
from indexer.ledger import AddedPhoto
from indexer.payload import CarPayload, reindexed

logger = logging.getLogger(__name__)

BatchHook = Callable[[int, int], None]
"""Called after each written batch with (files done, files to do)."""


@dataclass
class IndexReport:
    collection: str
    indexed: int = 0
    unchanged: int = 0
    updated: int = 0  # payloads brought up to date (class folder or manifest changed)
    deleted: int = 0
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    skipped_uploads: list[tuple[str, str]] = field(default_factory=list)  # not in the share
    total_points: int = 0
    seconds: float = 0.0

    @property
    def failure_share(self) -> float:
        attempted = self.indexed + self.unchanged + len(self.skipped)
        return len(self.skipped) / attempted if attempted else 0.0


@dataclass(frozen=True)
class Todo:
    """A photo to embed and the payload its point gets (given the photo's size)."""

    id: str
    file: Path
    label: str  # for reports: the gallery-relative path, or uploads/<file>
    payload: Callable[[tuple[int, int]], CarPayload]
    upload: bool = False


def upload_todo(upload: AddedPhoto, version: str) -> Todo:
    return Todo(
        upload.id,
        upload.photo,
        f"uploads/{upload.photo.name}",
        lambda size: reindexed(upload.payload, size, version),
        upload=True,
    )


def write(
    engine: VectorStore,
    collection: str,
    embedder: Embedder,
    todos: list[Todo],
    report: IndexReport,
    num_workers: int,
    on_batch: BatchHook | None,
    progress: bool,
    densities: bool,
) -> None:
    """Embed ``todos`` and upsert them batch by batch; unusable files go to ``report.skipped``.
    With ``densities``, each point gets its density among the points already there
    (``indexer.density``; a full build gives them all theirs at its end instead).

    A batch is written in a writer thread while the next one is embedded; each batch is
    confirmed (``on_batch``) once its write has completed, so an interrupted run has written
    every batch it reported.
    """
    from tqdm import tqdm

    done = 0

    def upsert(points: list[NewPoint], files: int) -> int:
        engine.upsert(collection, with_density(engine, collection, points) if densities else points)
        return files

    def confirm(write: Future[int]) -> None:
        nonlocal done
        files = write.result()
        done += files
        bar.update(files)
        if on_batch is not None:
            on_batch(done, len(todos))

    with (
        tqdm(total=len(todos), unit="img", desc="indexing", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="upsert") as writer,
    ):
        pending: Future[int] | None = None
        for batch in embedder.embed_files([t.file for t in todos], num_workers=num_workers):
            for index, reason in batch.failures:
                todo = todos[index]
                failed = report.skipped_uploads if todo.upload else report.skipped
                failed.append((todo.label, reason))
            points = [
                NewPoint(todos[index].id, vector, todos[index].payload(size))
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
