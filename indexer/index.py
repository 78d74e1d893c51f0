"""``CarIndex``: the one way the CLI, the service, the benchmarks and the tests reach the car
index, on either engine."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from carembed.embedder import Embedder
from indexer import build, store_format
from indexer.cars import CarWrites, NewPhoto
from indexer.copies import signal_of
from indexer.covers import IndexedCar, photos_of
from indexer.engines import open_engine
from indexer.engines.base import CollectionHeld, CollectionMissing, Engine, Query, vectors_of
from indexer.fields import CAR_ID
from indexer.gate import GATE_KEY, GatePolicy
from indexer.grouping import Grouped
from indexer.ledger import Ledger
from indexer.listing import Listings
from indexer.model_copies import ModelCopies
from indexer.payload import CarFields, CarFilter, Listing, StoredCar
from indexer.rollout_gate import RolloutGate
from indexer.served import IndexNotReady, ServedCollections
from indexer.settings import StoreSettings
from indexer.versions import AliasState, embedding_version_of
from indexer.writes import BatchHook, IndexReport

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class IndexStatus:
    engine: str
    location: str
    alias: str
    live: str | None
    previous: str | None
    live_embedding_version: str | None
    points: int | None
    live_gate: dict[str, Any] | None = None  # the quality gate's verdict that let it go live
    previous_gate: dict[str, Any] | None = None
    serving: str | None = None
    """With ``status(version)``: the collection those vectors are read from."""


class CarIndex:
    """The car index behind one alias: its live and previous collections, searches, writes,
    builds and rollbacks."""

    def __init__(self, engine: Engine, settings: StoreSettings) -> None:
        self.engine, self.settings, self.alias = engine, settings, settings.alias
        self.ledger = Ledger(settings.layout)
        self.served = ServedCollections(engine, self.alias, self.ledger)
        self.model_copies = ModelCopies(engine.model_copies, settings.layout.models)
        self.fields = settings.fields()
        self.listings = Listings(self.served, self.fields, settings.layout)
        self.cars = CarWrites(self.served, self.listings, settings.max_photos_per_car)
        self._gates: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def open(cls, settings: StoreSettings | None = None) -> CarIndex:
        settings = settings or StoreSettings()
        return cls(open_engine(settings), settings)

    def close(self) -> None:
        self.engine.close()

    # -- versions --------------------------------------------------------------------------
    def state(self) -> AliasState:
        return self.served.state()

    def live_is_older(self) -> bool:
        """Whether the live collection was written by an older carsearch (a full build
        replaces it; ``indexer.store_format``)."""
        live = self.state().live
        return live is not None and store_format.is_older(self.engine.metadata(live))

    def serving(self, version: str) -> str:
        """The collection to read these vectors from (``ServedCollections.serving``)."""
        return self.served.serving(version)

    def on_serving(self, version: str, operation: Callable[[str], T]) -> T:
        return self.served.on_serving(version, operation)

    def status(self, version: str | None = None) -> IndexStatus:
        """The alias, its collections and their gate verdicts, and the points of the live
        collection; with ``version``: of the collection those vectors are read from
        (``serving``, None when none holds them). One alias lookup and one count; a
        collection's verdict is read once (it never changes)."""
        state = self.state()
        counted, serving = state.live, None
        if version is not None:
            try:
                counted = serving = self.served.serving(version)
            except IndexNotReady:
                counted = None
        points = None
        if counted is not None:
            try:
                points = self.engine.count(counted)
            except (CollectionMissing, CollectionHeld):  # held: by the service that serves it
                points = None
        return IndexStatus(
            self.engine.name,
            self.settings.location,
            self.alias,
            state.live,
            state.previous,
            embedding_version_of(state.live),
            points,
            self._gate_record(state.live),
            self._gate_record(state.previous),
            serving,
        )

    def _gate_record(self, collection: str | None) -> dict[str, Any] | None:
        if collection is None:
            return None
        if collection not in self._gates:
            try:
                record = self.engine.metadata(collection).get(GATE_KEY)
            except CollectionMissing:
                return None
            self._gates[collection] = dict(record) if record else None
        return self._gates[collection]

    # -- reads and writes of one collection --------------------------------------------------
    def search(
        self,
        collection: str,
        vector: Query,
        where: CarFilter,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        fields: Sequence[str] | None = None,
    ) -> list[StoredCar]:
        """The best cars for ``vector`` (nearest it, or a recommendation), best first;
        ``fields``: only these payload fields (cheaper)."""
        return self.engine.search(collection, vector, where, limit, offset, score_threshold, fields)

    def search_groups(
        self,
        collection: str,
        vector: Query,
        where: CarFilter,
        field: str,
        groups: int,
        size: int,
        fields: Sequence[str],
    ) -> Grouped:
        """Up to ``groups`` groups of the best cars sharing the value of ``field`` (one group
        per class for ``class_name``), best group first, each with its best ``size`` cars (as
        their best photos); ``fields``: the payload fields read."""
        key, per_car = self.fields.key(field), self.settings.max_photos_per_car
        return self.engine.search_groups(
            collection, vector, where, key, groups, size, fields, per_car=per_car
        )

    def search_cars(
        self,
        collection: str,
        vector: Query,
        where: CarFilter,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        fields: Sequence[str] | None = None,
    ) -> Grouped:
        """The best cars for ``vector``, best first, each as its best photo (its score is
        that photo's): ``limit`` cars from the ``offset``-th on, every car at most once across
        pages; ``nearest``: the photos read, when the engine read them to find the cars."""
        wanted = offset + limit
        found = self.engine.search_groups(
            collection,
            vector,
            where,
            CAR_ID,
            wanted,
            1,
            fields,
            score_threshold=score_threshold,
            per_car=self.settings.max_photos_per_car,
        )
        return Grouped(found.groups[offset:], found.nearest)

    def get_many(self, collection: str, photo_ids: Sequence[str]) -> list[StoredCar]:
        """These photos (whole payloads), in the order asked; missing ones left out."""
        found = {c.id: c for c in self.engine.retrieve(collection, photo_ids)}
        return [found[i] for i in photo_ids if i in found]

    def get(self, collection: str, photo: str, with_vector: bool = False) -> StoredCar | None:
        """One photo by its id."""
        found = self.engine.retrieve(collection, [photo], with_vectors=with_vector)
        return found[0] if found else None

    def add_photo(
        self,
        version: str,
        data: bytes,
        suffix: str,
        size: tuple[int, int],
        vector: np.ndarray,
        car: CarFields,
        listing: Listing | None = None,
    ) -> IndexedCar:
        """``cars.add`` of a car of one photo (``suffix``: its format's file suffix)."""
        photo = NewPhoto(data, suffix, size, vector, signal=signal_of(data))
        return self.cars.add(version, [photo], car, listing or Listing()).car

    def delete(self, car_id: str) -> IndexedCar | None:
        """``cars.delete``: the car and all its photos, for good."""
        return self.cars.delete(car_id)

    def photo_vectors(self, collection: str, car_id: str) -> list[np.ndarray]:
        """The vectors of a car's photos (none: no such car)."""
        photos = photos_of(self.engine, collection, [car_id])
        return list(vectors_of(self.engine, collection, [p.id for p in photos]).values())

    def count(self, collection: str) -> int:
        return self.engine.count(collection)

    # -- builds ------------------------------------------------------------------------------
    def ensure_live(self, embedder: Embedder) -> str:
        self.model_copies.save(embedder.model)
        live = build.ensure_live(self.engine, self.alias, embedder)
        self.served.forget_serving()
        return live

    def build(
        self,
        embedder: Embedder,
        gallery: Path,
        *,
        num_workers: int = 0,
        max_failure_share: float = 0.05,
        on_batch: BatchHook | None = None,
        progress: bool = True,
        gate: GatePolicy | None = None,
    ) -> IndexReport:
        """A full build; with ``gate``, a collection of another model goes live only when the
        quality gate passes it (``indexer.gate``; GateRefused otherwise)."""
        self.model_copies.save(embedder.model)  # before the alias can name its collection
        check = None
        if gate is not None:
            layout = self.settings.layout
            judged = RolloutGate(
                self.engine, self.model_copies, layout.uploads, layout.onnx, embedder, gallery, gate
            )
            check = judged.check
        try:
            return build.build_full(
                self.engine,
                embedder,
                gallery,
                self.alias,
                self.ledger,
                self.fields,
                num_workers=num_workers,
                max_failure_share=max_failure_share,
                on_batch=on_batch,
                progress=progress,
                on_moved=self.served.forget_serving,
                gate=check,
                served=self.served,
            )
        finally:
            self.served.forget_serving()

    def update(
        self,
        embedder: Embedder,
        gallery: Path,
        *,
        num_workers: int = 0,
        on_batch: BatchHook | None = None,
        progress: bool = True,
    ) -> IndexReport:
        """An incremental update of the live collection (same embedding version); the stored
        model copy takes the embedder's descriptive config (a re-fitted calibration)."""
        self.model_copies.save(embedder.model)
        return build.update_incremental(
            self.engine,
            embedder,
            gallery,
            self.alias,
            self.ledger,
            self.fields,
            num_workers=num_workers,
            on_batch=on_batch,
            progress=progress,
            join=self.served.join,
        )

    def snapshot(self, out: Path) -> Path:
        """A snapshot of the live collection in the folder ``out`` (a Qdrant server makes it)."""
        live = self.state().live
        if live is None:
            raise build.IndexBuildError(f"no collection behind the alias {self.alias!r}")
        target = self.engine.snapshot(live, out)
        logger.info("snapshot of %s: %s (%d bytes)", live, target, target.stat().st_size)
        return target

    def rollback(self) -> str:
        """Swap the alias back to the previous collection (and previous to the current)."""
        state = self.state()
        try:
            after = state.rolled_back()
        except LookupError as exc:
            raise build.IndexBuildError(str(exc)) from exc
        self.engine.aliases.move(state, after)
        logger.info("alias %s -> %s (rolled back from %s)", self.alias, after.live, state.live)
        self.served.forget_serving()
        assert after.live is not None
        return after.live
