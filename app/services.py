"""What the service holds while it runs: built once in the lifespan, reached through
dependencies. The background gallery indexer and the model follower run here too.

The service serves the model of the collection the alias names: when a build (in this process
or another one, on the embedded store or a server) moves the alias to a new model's collection,
the follower loads that model from the copy stored with the index, catches up the cars added
meanwhile, and switches; requests already running finish with the model they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from app.batcher import MicroBatcher
from app.metrics import Metrics
from app.pixel_budget import PixelBudget
from app.settings import AppSettings
from app.single_flight import SingleFlight
from carembed.artifact import load_or_default
from carembed.datasets import dataset_root
from carembed.embedder import Embedder
from carembed.identify import Calibration, calibration_of
from carembed.model import CarEmbeddingModel
from indexer.engine import StoreError
from indexer.gate import GateRefused
from indexer.index import CarIndex

logger = logging.getLogger(__name__)

MODEL_LOAD_S = 300.0
"""Bound on loading a model from the store and catching up its uploads (background work)."""


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


@dataclass(frozen=True)
class ServingModel:
    """A loaded model and the micro-batcher that runs its forward passes."""

    embedder: Embedder
    batcher: MicroBatcher
    calibration: Calibration  # the model's identification vote and confidence maps

    @property
    def version(self) -> str:
        return self.embedder.version


@dataclass
class Services:
    settings: AppSettings
    index: CarIndex
    metrics: Metrics
    configured: Embedder  # what --gallery is indexed with: --model, else the live model
    model: ServingModel  # what requests use now; replaced whole when the alias moves
    loaded: dict[str, ServingModel] = field(default_factory=dict)
    missing_models: set[str] = field(default_factory=set)  # live versions with no stored copy
    indexing: IndexingProgress = field(default_factory=IndexingProgress)
    started: float = field(default_factory=time.time)
    follow_rounds: int = 0  # looks at the alias the model follower has made
    thumbnails: SingleFlight[None] = field(default_factory=SingleFlight, repr=False)
    pixels: PixelBudget = field(init=False, repr=False)
    _retiring: set[asyncio.Future[None]] = field(default_factory=set, repr=False)
    store_executor: ThreadPoolExecutor = field(init=False, repr=False)
    decode_executor: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Store calls and decoding get their own bounded threads: a store that hangs cannot
        # starve decoding, and at most ``decode_workers`` images are decoded at once.
        self.store_executor = ThreadPoolExecutor(
            self.settings.store_workers, thread_name_prefix="store"
        )
        self.decode_executor = ThreadPoolExecutor(
            self.settings.decode_workers, thread_name_prefix="decode"
        )
        self.pixels = PixelBudget(
            self.settings.decode_pixel_budget, self.settings.decode_queue_pixels
        )

    @property
    def gallery_root(self) -> Path | None:
        """Where gallery payload paths start: the reader's root (a manifest's folder)."""
        gallery = self.settings.gallery
        return dataset_root(gallery) if gallery is not None else None

    @property
    def uploads_dir(self) -> Path:
        return self.index.ledger.uploads_dir

    @property
    def thumbs_dir(self) -> Path:
        """Thumbnails by car id: a car id is the hash of its photo's bytes."""
        return self.settings.layout.thumbs

    def serving_collection(self, model: ServingModel | None = None) -> str:
        """The collection holding this model's vectors (live, or previous during a rollout);
        raises IndexNotReady when none does."""
        return self.index.serving((model or self.model).version)

    def serve(self, embedder: Embedder) -> ServingModel:
        """The loaded model for ``embedder`` (started once per version; call on the loop)."""
        found = self.loaded.get(embedder.version)
        if found is None:
            found = self.loaded[embedder.version] = start_model(
                self.settings, self.metrics, embedder
            )
        return found

    def retire_unused(self) -> None:
        """Models neither serving nor configured are let go once the requests that started
        with them are done (after ``model_retire_s``): memory stays bounded across rollouts."""
        keep = {self.model.version, self.configured.version}
        for version in [v for v in self.loaded if v not in keep]:
            self.retire_later(self.loaded.pop(version))

    def retire_later(self, model: ServingModel) -> None:
        """Stop ``model``'s batcher after ``model_retire_s`` (call on the loop)."""

        async def stop_later() -> None:
            await asyncio.sleep(self.settings.model_retire_s)
            await model.batcher.stop()
            logger.info("model %s (%s) unloaded", model.version, model.embedder.engine_name)

        self._retiring.add(asyncio.ensure_future(stop_later()))

    async def close(self) -> None:
        for task in self._retiring:
            task.cancel()
        for model in self.loaded.values():
            await model.batcher.stop()
        self.decode_executor.shutdown(wait=True, cancel_futures=True)
        self.store_executor.shutdown(wait=False, cancel_futures=True)  # a hung call stays behind
        self.index.close()


def start_model(settings: AppSettings, metrics: Metrics, embedder: Embedder) -> ServingModel:
    """``embedder`` with its micro-batcher running (call on the event loop)."""
    batcher = MicroBatcher(
        embedder.embed_arrays,
        settings.batch_limit,
        settings.max_wait_ms,
        observe=metrics.batch_size.observe,
        others_in_flight=lambda: metrics.active > 1,
    )
    batcher.start()
    calibration = calibration_of(embedder.model.config)
    overrides = {"k": settings.identify_k, "temperature": settings.identify_temperature}
    changes = {key: value for key, value in overrides.items() if value is not None}
    return ServingModel(embedder, batcher, calibration.model_copy(update=changes))


def make_embedder(settings: AppSettings, model: CarEmbeddingModel) -> Embedder:
    """An embedder as the service runs it, warmed up with one forward pass."""
    embedder = settings.embedder(
        model, batch_size=settings.batch_limit, onnx_dir=settings.layout.onnx
    )
    size = embedder.preprocessing.size
    embedder.embed_arrays(np.zeros((1, 3, size, size), np.float32))
    return embedder


async def build_services(settings: AppSettings) -> Services:
    def load() -> tuple[CarIndex, Embedder]:
        configured = make_embedder(settings, load_or_default(settings.model_dir, settings.device))
        return CarIndex.open(settings), configured

    index, configured = await asyncio.to_thread(load)
    metrics = Metrics()
    model = start_model(settings, metrics, configured)
    services = Services(settings, index, metrics, configured, model, {configured.version: model})
    if settings.follow_live_model:  # the live collection's model, if it is another one
        try:
            await follow_once(services)
        except Exception as exc:  # a store that does not answer delays nothing
            logger.warning("the live collection's model is not known yet (%s)", exc)
    if settings.model_dir is None:  # no model named: index --gallery with the one serving
        services.configured = services.model.embedder
    logger.info(
        "model %s serving; store %s (%s)",
        services.model.version,
        settings.location,
        index.engine.name,
    )
    return services


async def follow_once(services: Services) -> None:
    """If the alias names a collection of another model than the one serving: load that model
    (from its copy in the store), add the uploads the collection lacks, and switch to it."""
    settings, index = services.settings, services.index
    loop = asyncio.get_running_loop()

    async def on_store(seconds: float, call: Any, *args: Any) -> Any:
        work = loop.run_in_executor(services.store_executor, call, *args)
        return await asyncio.wait_for(work, seconds)

    state = await on_store(settings.store_deadline_s, index.state)
    live, version = state.live, state.live_version
    if live is None or version is None or version == services.model.version:
        return
    model = services.loaded.get(version)
    if model is None:
        if version in services.missing_models:
            return
        stored = await on_store(MODEL_LOAD_S, index.models.load, version, settings.device)
        if stored is None:
            services.missing_models.add(version)
            logger.warning(
                "the live collection's model %s has no copy in the store: serving %s from the "
                "previous collection (or 503 until its own collection is built)",
                version,
                services.model.version,
            )
            return
        model = services.serve(await asyncio.to_thread(make_embedder, settings, stored))
    added, deleted = await on_store(MODEL_LOAD_S, index.sync_uploads, live, model.embedder)
    previous, services.model = services.model, model
    if settings.model_dir is None:  # no model named: the live one is this service's model
        services.configured = model.embedder
    services.retire_unused()
    logger.info(
        "now serving model %s from %s (was %s; uploads caught up: +%d -%d)",
        version,
        live,
        previous.version,
        added,
        deleted,
    )


async def follow_live_model(services: Services) -> None:
    """Switch to the model of the collection the alias names, whenever it changes (unless
    this service is pinned to its configured model)."""
    while services.settings.follow_live_model:
        await asyncio.sleep(services.settings.model_poll_s)
        try:
            await follow_once(services)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            logger.debug("the store did not answer the alias lookup in time")
        except Exception:
            logger.exception("following the live collection failed; trying again")
        services.follow_rounds += 1


T = TypeVar("T")


def in_daemon_thread(
    loop: asyncio.AbstractEventLoop, work: Callable[..., T], *args: Any
) -> asyncio.Future[T]:
    """Run ``work`` in a daemon thread (it never holds up the process's exit: unlike the
    loop's executor, which the loop waits for when it closes); the future gets its result."""
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result, error = None, None
        try:
            result = work(*args)
        except BaseException as exc:  # handed to whoever awaits the future
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=getattr(work, "__name__", "work"), daemon=True).start()
    return done


class Stopped(Exception):
    """The service is shutting down: the gallery run stops at its next batch (resumable)."""


def _index_gallery(services: Services, stop: threading.Event) -> str:
    settings, progress = services.settings, services.indexing
    assert settings.gallery is not None
    progress.update(state="running", message="indexing the gallery")

    def on_batch(done: int, total: int) -> None:
        progress.update(done=done, total=total)
        if stop.is_set():
            raise Stopped

    index, embedder = services.index, services.configured
    live_version = index.state().live_version
    if live_version is not None and live_version != embedder.version:
        # The live model keeps answering until the new collection is complete.
        report = index.build(
            embedder,
            settings.gallery,
            on_batch=on_batch,
            progress=False,
            max_failure_share=1.0,
            gate=settings.gate_policy(),
        )
    else:
        index.ensure_live(embedder)
        report = index.update(embedder, settings.gallery, on_batch=on_batch, progress=False)
    return (
        f"indexed {report.indexed}, unchanged {report.unchanged}, updated {report.updated}, "
        f"deleted {report.deleted}, skipped {len(report.skipped)}"
    )


def prepare_index(services: Services, stop: threading.Event) -> None:
    """The start-up work on the index, in a worker thread: index ``--gallery`` or, with none,
    make sure an (empty) collection exists for cars added through the API. While the store
    does not answer, it retries every ``store_retry_s`` instead of staying broken until a
    restart; at shutdown it stops at the next batch."""
    progress = services.indexing
    while not stop.is_set():
        try:
            if services.settings.gallery is None:
                services.index.ensure_live(services.configured)
                return
            message = _index_gallery(services, stop)
            progress.update(state="done", message=message)
            logger.info("gallery indexed: %s", message)
            return
        except Stopped:
            progress.update(
                state="stopped", message="stopped at shutdown; resumes at the next start"
            )
            return
        except GateRefused as refused:
            logger.error("the new model did not pass the quality gate:\n%s", refused)
            progress.update(state="refused", message=" ".join(refused.verdict.lines()))
            return
        except StoreError as exc:
            logger.warning("the vector store is not usable (%s); retrying", exc)
            progress.update(state="waiting", message="the vector store is not reachable; retrying")
            stop.wait(services.settings.store_retry_s)
        except Exception as exc:
            logger.exception("indexing the gallery failed")
            progress.update(state="failed", message=f"indexing failed: {type(exc).__name__}")
            return
