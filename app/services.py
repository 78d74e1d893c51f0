"""What the service holds while it runs: built once in the lifespan, reached through
dependencies. The background gallery indexer runs here too, so that one process owns the
embedded store."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.batcher import MicroBatcher
from app.metrics import Metrics
from app.settings import AppSettings
from carembed.artifact import load_or_default
from carembed.embedder import Embedder
from carembed.images import ImageLimits
from indexer.index import CarIndex
from indexer.versions import model_version_of

logger = logging.getLogger(__name__)


@dataclass
class IndexingProgress:
    state: str = "idle"  # idle | running | done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "state": self.state,
                "done": self.done,
                "total": self.total,
                "message": self.message,
            }

    def update(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)


@dataclass
class Services:
    settings: AppSettings
    embedder: Embedder
    index: CarIndex
    batcher: MicroBatcher
    metrics: Metrics
    indexing: IndexingProgress = field(default_factory=IndexingProgress)
    started: float = field(default_factory=time.time)

    @property
    def uploads_dir(self) -> Path:
        return self.index.ledger.uploads_dir

    @property
    def thumbs_dir(self) -> Path:
        return self.settings.data_dir / "thumbs" / self.embedder.version

    def serving_collection(self) -> str:
        """The collection holding this model's vectors (live, or previous during a rollout);
        raises IndexNotReady when none does."""
        return self.index.serving(self.embedder.version)


def build_services(settings: AppSettings) -> Services:
    model = load_or_default(settings.model_dir, device=settings.device)
    embedder = Embedder(
        model,
        device=settings.device,
        threads=settings.threads,
        batch_size=settings.batch_limit,
        limits=ImageLimits(max_pixels=settings.max_pixels),
        engine=settings.engine,
        onnx_dir=settings.data_dir / "onnx",
    )
    size = embedder.preprocessing.size
    embedder.embed_arrays(np.zeros((1, 3, size, size), np.float32))  # warm-up forward
    metrics = Metrics()
    batcher = MicroBatcher(
        embedder.embed_arrays,
        settings.batch_limit,
        settings.max_wait_ms,
        observe=metrics.batch_size.observe,
        others_in_flight=lambda: metrics.active > 1,
    )
    index = CarIndex.open(settings)
    logger.info(
        "model %s loaded; store %s (%s)", embedder.version, settings.location, index.engine.name
    )
    return Services(settings, embedder, index, batcher, metrics)


def _index_gallery(services: Services) -> None:
    settings, progress = services.settings, services.indexing
    assert settings.gallery is not None
    progress.update(state="running", message=f"indexing {settings.gallery}")

    def on_batch(done: int, total: int) -> None:
        progress.update(done=done, total=total)

    index, embedder = services.index, services.embedder
    try:
        live_version = model_version_of(index.state().live)
        if live_version is not None and live_version != embedder.version:
            # Another model's vectors stay searchable until the new collection is complete.
            report = index.build(
                embedder, settings.gallery, on_batch=on_batch, progress=False, max_failure_share=1.0
            )
        else:
            index.ensure_live(embedder)
            report = index.update(embedder, settings.gallery, on_batch=on_batch, progress=False)
        progress.update(
            state="done",
            message=f"indexed {report.indexed}, unchanged {report.unchanged}, "
            f"deleted {report.deleted}, skipped {len(report.skipped)}",
        )
        logger.info("gallery indexed: %s", progress.message)
    except Exception as exc:
        logger.exception("indexing the gallery failed")
        progress.update(state="failed", message=f"indexing failed: {type(exc).__name__}")


async def start_gallery_indexing(services: Services) -> asyncio.Future[None] | None:
    """Index ``--gallery`` in a worker thread; with none, make sure an (empty) collection
    exists so that cars added through the API have somewhere to go."""
    if services.settings.gallery is None:
        try:
            await asyncio.to_thread(services.index.ensure_live, services.embedder)
        except Exception:
            logger.warning("the vector store is not reachable yet: searches answer 503")
        return None
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(None, _index_gallery, services)
