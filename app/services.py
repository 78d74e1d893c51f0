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
from typing import TYPE_CHECKING, Any

import numpy as np

from app.batcher import MicroBatcher
from app.metrics import Metrics
from app.settings import AppSettings
from carembed.artifact import load_or_default
from carembed.embedder import Embedder
from carembed.images import ImageLimits
from carembed.store import PREVIOUS_SUFFIX, open_client, parse_collection_name, resolve_alias

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)

TARGET_TTL_S = 5.0


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
    client: QdrantClient
    batcher: MicroBatcher
    metrics: Metrics
    indexing: IndexingProgress = field(default_factory=IndexingProgress)
    started: float = field(default_factory=time.time)
    _target: str | None = field(default=None, repr=False)
    _target_at: float = field(default=0.0, repr=False)

    @property
    def uploads_dir(self) -> Path:
        return self.settings.data_dir / "uploads"

    @property
    def thumbs_dir(self) -> Path:
        return self.settings.data_dir / "thumbs" / self.embedder.version

    def live_collection(self) -> str | None:
        return resolve_alias(self.client, self.settings.alias)

    def live_model_version(self) -> str | None:
        live = self.live_collection()
        parsed = parse_collection_name(live) if live else None
        return parsed[1] if parsed else None

    def collection(self) -> str:
        """The collection whose vectors this model made: the live one, or during a rollout
        the previous one (the alias may already point to another model's new collection).
        Looked up at most every few seconds. Raises LookupError when neither matches."""
        now = time.monotonic()
        if self._target is not None and now - self._target_at < TARGET_TTL_S:
            return self._target
        alias = self.settings.alias
        candidates = [
            resolve_alias(self.client, alias),
            resolve_alias(self.client, alias + PREVIOUS_SUFFIX),
        ]
        for name in candidates:
            parsed = parse_collection_name(name) if name else None
            if name and (parsed is None or parsed[1] == self.embedder.version):
                self._target, self._target_at = name, now
                return name
        raise LookupError(f"no collection holds vectors of model {self.embedder.version}")


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
    client = open_client(settings)
    logger.info(
        "model %s loaded; store %s", embedder.version, settings.qdrant_url or settings.qdrant_path
    )
    return Services(settings, embedder, client, batcher, metrics)


def _index_gallery(services: Services) -> None:
    from indexer.build import build_full, ensure_live, update_incremental

    settings, progress = services.settings, services.indexing
    assert settings.gallery is not None
    progress.update(state="running", message=f"indexing {settings.gallery}")

    def on_batch(done: int, total: int) -> None:
        progress.update(done=done, total=total)

    target = (services.client, services.embedder, settings.gallery, settings.alias)
    try:
        live_version = services.live_model_version()
        if live_version is not None and live_version != services.embedder.version:
            # Another model's vectors stay searchable until the new collection is complete.
            report = build_full(
                *target,
                on_batch=on_batch,
                progress=False,
                max_failure_share=1.0,
                collection_params=settings.collection_params(),
            )
        else:
            ensure_live(
                services.client, settings.alias, services.embedder, settings.collection_params()
            )
            report = update_incremental(*target, on_batch=on_batch, progress=False)
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
        from indexer.build import ensure_live

        try:
            await asyncio.to_thread(
                ensure_live,
                services.client,
                services.settings.alias,
                services.embedder,
                services.settings.collection_params(),
            )
        except Exception:
            logger.warning("the vector store is not reachable yet: searches answer 503")
        return None
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(None, _index_gallery, services)
