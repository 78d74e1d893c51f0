"""A car's photos in one collection and its cover: of the points that share a car id, the one
with the smallest id has ``cover: true`` and the others ``false``. Browsing and facets read the
covers, so they see each car once; the rule depends only on which photos are there, so any
writer (an add, a delete, a build, a process joining a collection) can settle it again."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexer.engines.base import VectorStore
from indexer.fields import CAR_ID, COVER
from indexer.payload import CarFilter, CarPayload, StoredCar

logger = logging.getLogger(__name__)

PHOTOS_READ = 1000
"""Most photos read of one car (more than a car may have)."""


@dataclass(frozen=True)
class IndexedCar:
    """A car and its photos, its cover first, then by id."""

    id: str
    photos: list[StoredCar]

    @classmethod
    def of(cls, car_id: str, photos: Sequence[StoredCar]) -> IndexedCar | None:
        """The car of these photos (None without any)."""
        if not photos:
            return None
        return cls(car_id, sorted(photos, key=lambda p: p.id))

    @property
    def cover(self) -> StoredCar:
        return self.photos[0]

    @property
    def payload(self) -> CarPayload:
        """The car's fields (the cover's payload: each photo has them)."""
        return self.cover.payload


Locking = Callable[[str], contextlib.AbstractContextManager[None]]
"""A car's write lock (``Ledger.writing``)."""


def photos_of(store: VectorStore, collection: str, car_ids: list[str]) -> list[StoredCar]:
    """The photos of these cars in ``collection`` (whole payloads), by id."""
    if not car_ids:
        return []
    where = CarFilter(cars=frozenset(car_ids))
    photos, _ = store.page(collection, where, PHOTOS_READ * len(car_ids), None)
    return photos


def _changes(covers: dict[str, bool | None]) -> dict[str, bool]:
    """Photo id -> the cover flag it must get, for one car's photos (id -> flag now)."""
    first = min(covers)
    return {pid: pid == first for pid, now in covers.items() if now is not (pid == first)}


def settle(store: VectorStore, collection: str, car_id: str) -> None:
    """Give the car's photos in ``collection`` their cover flags (call within its lock)."""
    photos = photos_of(store, collection, [car_id])
    if photos:
        for pid, flag in _changes({p.id: p.payload.cover for p in photos}).items():
            store.set_payload(collection, pid, {COVER: flag})


def settle_all(store: VectorStore, collection: str, locking: Locking | None) -> int:
    """Settle every car of ``collection`` whose cover flags are not right, each under its
    lock (``locking``; None: no other writer). Returns how many cars were settled."""
    cars: dict[str, dict[str, bool | None]] = defaultdict(dict)
    for pid, payload in store.scroll(collection, [CAR_ID, COVER]):
        cars[payload[CAR_ID]][pid] = payload.get(COVER)
    wrong = sorted(car for car, covers in cars.items() if _changes(covers))
    for car in wrong:
        with locking(car) if locking else contextlib.nullcontext():
            settle(store, collection, car)
    if wrong:
        logger.info("%s: the covers of %d cars settled", collection, len(wrong))
    return len(wrong)
