"""What the service holds while it runs: built once in the lifespan, reached through
dependencies. The models it runs are in ``app.registry``, the start-up work on the index in
``app.gallery_indexing``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from app.metrics import Metrics
from app.pixel_budget import PixelBudget
from app.progress import IndexingProgress
from app.registry import ModelRegistry, ServingModel, make_embedder
from app.settings import AppSettings
from app.single_flight import SingleFlight
from carembed.artifact import load_or_default
from carembed.datasets import dataset_root
from carembed.embedder import Embedder
from indexer import CarIndex

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Services:
    settings: AppSettings
    index: CarIndex
    metrics: Metrics
    registry: ModelRegistry
    indexing: IndexingProgress = field(default_factory=IndexingProgress)
    started: float = field(default_factory=time.time)
    thumbnails: SingleFlight[None] = field(default_factory=SingleFlight, repr=False)
    pixels: PixelBudget = field(init=False, repr=False)
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

    @property
    def model(self) -> ServingModel:
        """The model requests use now (a request keeps the one it started with)."""
        return self.registry.serving

    async def on_store(
        self, seconds: float, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``call(*args)`` on a store thread, TimeoutError after ``seconds`` (a request goes
        through ``app.deps.store``, which adds its deadline, no retries and its answers)."""
        work = asyncio.get_running_loop().run_in_executor(
            self.store_executor, partial(call, *args, **kwargs)
        )
        return await asyncio.wait_for(work, seconds)

    async def close(self) -> None:
        await self.registry.close()
        self.decode_executor.shutdown(wait=True, cancel_futures=True)
        self.store_executor.shutdown(wait=False, cancel_futures=True)  # a hung call stays behind
        self.index.close()


async def build_services(settings: AppSettings) -> Services:
    def load() -> tuple[CarIndex, Embedder]:
        configured = make_embedder(settings, load_or_default(settings.model_dir, settings.device))
        return CarIndex.open(settings), configured

    index, configured = await asyncio.to_thread(load)
    metrics = Metrics()
    services = Services(
        settings, index, metrics, ModelRegistry(settings, metrics, index, configured)
    )
    try:  # join what can go live; the live collection's model, if it is another one
        await services.registry.follow_once(services.on_store)
    except Exception as exc:  # a store that does not answer delays nothing
        logger.warning("the live collection's model is not known yet (%s)", exc)
    logger.info(
        "model %s serving; store %s (%s)",
        services.model.version,
        settings.location,
        index.engine.name,
    )
    return services


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
