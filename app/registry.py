"""The models a service runs: the one requests use, the one its gallery is indexed with, the
ones loaded for a rollout, and their retirement.

The service serves the vectors of the collection the alias names: when a build (in this process
or another one, on the embedded store or a server) moves the alias to a collection of another
embedding version, ``follow_once`` loads that model from the copy stored with the index, runs it
at the collection's precision, catches up the cars added meanwhile, and switches; requests
already running finish with the model they started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

import numpy as np

from app.batcher import MicroBatcher
from app.metrics import Metrics
from app.settings import AppSettings
from carembed.backends import MissingGraph
from carembed.calibration import Calibration, calibration_of
from carembed.cpu import cpu_description
from carembed.embedder import Embedder
from carembed.identity import Precision, parse_embedding_version
from carembed.int8_files import int8_check, int8_graph_path
from carembed.model import CarEmbeddingModel
from indexer import CarIndex

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

MODEL_LOAD_S = 300.0
"""Bound on loading a model from the store and catching up its uploads (background work)."""


class OnStore(Protocol):
    """``on_store(seconds, call, *args)``: ``call(*args)`` on a store thread, bounded in time."""

    def __call__(
        self, seconds: float, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


@dataclass(frozen=True)
class ServingModel:
    """A loaded model and the micro-batcher that runs its forward passes."""

    embedder: Embedder
    batcher: MicroBatcher
    calibration: Calibration  # the model's identification vote and confidence maps
    int8_check: dict[str, Any] | None = None
    """The recorded check of the int8 graph it runs (with the CPU it was measured on and
    this one's), None at float32."""

    @property
    def version(self) -> str:
        """The embedding version of its vectors."""
        return self.embedder.version


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
    check = None
    if embedder.precision == "int8":
        report = int8_check(int8_graph_path(embedder.model, settings.layout.onnx))
        check = None if report is None else report.model_dump() | {"this_cpu": cpu_description()}
    return ServingModel(embedder, batcher, calibration.model_copy(update=changes), check)


def make_embedder(
    settings: AppSettings, model: CarEmbeddingModel, precision: Precision | None = None
) -> Embedder:
    """An embedder as the service runs it (at ``precision``, else as the settings say), warmed
    up with one forward pass."""
    embedder = settings.embedder(
        model, batch_size=settings.batch_limit, onnx_dir=settings.layout.onnx, precision=precision
    )
    size = embedder.preprocessing.size
    embedder.embed_arrays(np.zeros((1, 3, size, size), np.float32))
    return embedder


class ModelRegistry:
    def __init__(
        self, settings: AppSettings, metrics: Metrics, index: CarIndex, configured: Embedder
    ) -> None:
        """Call on the event loop: ``configured`` starts serving."""
        self.settings, self.metrics, self.index = settings, metrics, index
        self.configured = configured
        """What ``--gallery`` is indexed with: ``--model``, else the live model."""
        self.serving = start_model(settings, metrics, configured)
        """What requests use now; replaced whole when the alias moves."""
        self.loaded: dict[str, ServingModel] = {configured.version: self.serving}
        self.unusable: set[str] = set()
        """Live embedding versions this service cannot run (no stored copy, no int8 graph)."""
        self.follow_rounds = 0
        """Looks at the alias the follower has made."""
        self._retiring: set[asyncio.Future[None]] = set()

    def serve(self, embedder: Embedder) -> ServingModel:
        """The loaded model for ``embedder`` (started once per version)."""
        found = self.loaded.get(embedder.version)
        if found is None:
            found = self.loaded[embedder.version] = start_model(
                self.settings, self.metrics, embedder
            )
        return found

    async def adopt(self, model: ServingModel, collection: str, on_store: OnStore) -> None:
        """Serve ``model`` from ``collection`` once it is joined (brought up to date with the
        ledger, the cars added meanwhile embedded with ``model``); joined again after the
        switch, for the cars the previous model added in between."""
        served = self.index.served
        caught_up = await on_store(MODEL_LOAD_S, served.join, collection, model.embedder)
        previous, self.serving = self.serving, model
        served.forget_serving()
        after = await on_store(MODEL_LOAD_S, served.join, collection, model.embedder)
        if self.settings.model_dir is None:  # no model named: the live one is this service's
            self.configured = model.embedder
        self.retire_unused()
        logger.info(
            "now serving %s from %s (was %s; caught up: +%d -%d)",
            model.version,
            collection,
            previous.version,
            caught_up.added + after.added,
            caught_up.deleted + after.deleted,
        )

    async def follow_once(self, on_store: OnStore) -> None:
        """Join the collections that can go live (``ServedCollections.join_all``); then, if the
        alias names a collection of other vectors than the ones serving: load the model that
        made them and switch to it."""
        await on_store(MODEL_LOAD_S, self.index.served.join_all, self.serving.embedder)
        if not self.settings.follow_live_model:
            return
        state = await on_store(self.settings.store_deadline_s, self.index.state)
        live, version = state.live, state.live_version
        if live is None or version is None or version == self.serving.version:
            return
        model = self.loaded.get(version)
        if model is None:
            if version in self.unusable:
                return
            embedder = await self._load(version, on_store)
            if embedder is None:
                self.unusable.add(version)
                return
            model = self.serve(embedder)
        await self.adopt(model, live, on_store)

    async def _load(self, version: str, on_store: OnStore) -> Embedder | None:
        """The embedder that makes the vectors ``version``, from the model stored with the
        index; None (and why, logged) when this service cannot run it."""
        parsed = parse_embedding_version(version)
        if parsed is None:
            logger.error(
                "the live collection holds vectors %s of an earlier carsearch's model identity: "
                "serving %s from the previous collection (or 503) until `carsearch index build` "
                "rebuilds it",
                version,
                self.serving.version,
            )
            return None
        stored = await on_store(
            MODEL_LOAD_S, self.index.model_copies.load, parsed.model_version, self.settings.device
        )
        if stored is None:
            logger.warning(
                "the live collection's model %s has no copy in the store: serving %s from the "
                "previous collection (or 503 until its own collection is built)",
                parsed.model_version,
                self.serving.version,
            )
            return None
        try:
            return await asyncio.to_thread(make_embedder, self.settings, stored, parsed.precision)
        except MissingGraph as exc:
            logger.error("cannot make the live collection's vectors %s here: %s", version, exc)
            return None

    async def follow(self, on_store: OnStore) -> None:
        """Join the collections that can go live as they appear, and switch to the model of the
        collection the alias names whenever it changes (unless this service is pinned to its
        configured model)."""
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self.follow_once(on_store)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                logger.debug("the store did not answer the alias lookup in time")
            except Exception:
                logger.exception("following the live collection failed; trying again")
            self.follow_rounds += 1

    def retire_unused(self) -> None:
        """Models neither serving nor configured are let go once the requests that started
        with them are done (after ``model_retire_s``): memory stays bounded across rollouts."""
        keep = {self.serving.version, self.configured.version}
        for version in [v for v in self.loaded if v not in keep]:
            self._retire_later(self.loaded.pop(version))

    def _retire_later(self, model: ServingModel) -> None:
        async def stop_later() -> None:
            await asyncio.sleep(self.settings.model_retire_s)
            await model.batcher.stop()
            logger.info("model %s (%s) unloaded", model.version, model.embedder.backend)

        self._retiring.add(asyncio.ensure_future(stop_later()))

    async def close(self) -> None:
        for task in self._retiring:
            task.cancel()
        for model in self.loaded.values():
            await model.batcher.stop()
