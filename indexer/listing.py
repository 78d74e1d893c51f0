"""The index's cars as another service's listings: found by external id, edited, walked page by
page with a cursor, counted per field value (facets), and refined searches ("more like these,
less like that").

A browse cursor names the id the next page starts at and the filter it belongs to, signed with
a key kept beside the data (``DataLayout.cursor_key``): a cursor that was altered, made up or
used with another filter is refused. Pages go in id order, and ids come from the photos, so a
walk sees every car that exists for the whole walk exactly once, also across rollouts.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import Any

import numpy as np

from carembed.atomic import write_atomically
from indexer.covers import IndexedCar, photos_of
from indexer.cursor import Cursors
from indexer.engines.base import CollectionMissing, Recommend, vectors_of
from indexer.fields import MAX_ATTRIBUTES, FieldError, FieldSchema, Match, check_storable
from indexer.files import locked
from indexer.layout import DataLayout
from indexer.payload import CarFilter, CarPayload, StoredCar, edit_changes
from indexer.served import ServedCollections


class UnknownCars(LookupError):
    """Car ids that are not in the index."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"no car with id {', '.join(ids)}")
        self.ids = ids


class ExternalIdTaken(ValueError):
    """Another car has this external id."""


class Listings:
    def __init__(self, served: ServedCollections, fields: FieldSchema, layout: DataLayout) -> None:
        self._served, self._engine, self._ledger = served, served.engine, served.ledger
        self._fields, self._layout = fields, layout
        self._key: bytes | None = None
        self._cursors = Cursors(self._cursor_key)

    def _match(self, field: str, value: str | int | bool) -> Match:
        """The condition ``field == value`` on its payload key."""
        return Match(self._fields.key(field), value)

    # -- external ids ----------------------------------------------------------------------
    def with_external_id(self, external_id: str) -> list[str]:
        """The ids of the cars with this external id, in the live and previous collections."""
        where = CarFilter(where=(self._match("external_id", external_id),))
        state, found = self._served.state(), []
        for name in state.collections:
            with contextlib.suppress(CollectionMissing):
                found += [c.car_id for c in self._engine.page(name, where, 100, None)[0]]
        return sorted(set(found))

    def by_external_id(self, collection: str, external_id: str) -> IndexedCar | None:
        where = CarFilter(where=(self._match("external_id", external_id),))
        photos, _ = self._engine.page(collection, where, 1, None)
        return self.car(collection, photos[0].car_id) if photos else None

    def car(self, collection: str, car_id: str) -> IndexedCar | None:
        """The car and its photos in ``collection`` (None: no such car)."""
        return IndexedCar.of(car_id, photos_of(self._engine, collection, [car_id]))

    # -- edits -----------------------------------------------------------------------------
    def edit(self, car_id: str, patch: dict[str, Any]) -> IndexedCar | None:
        """Apply ``patch`` (a JSON merge patch of car fields, ``external_id`` and
        ``attributes``) to the car, once for all its photos: kept in the ledger for every later
        build and collection, then made in every collection this process writes. None when
        there is no such car; ExternalIdTaken when another car has the external id it sets;
        FieldError, with nothing written, when the edited car could not be stored."""
        served, ledger = self._served, self._ledger
        with (
            served.writes(),
            ledger.claiming(patch.get("external_id")),
            ledger.writing(car_id),
        ):
            photos = served.car_photos(car_id)
            if not photos:
                return None
            external = patch.get("external_id")
            if external is not None and set(self.with_external_id(external)) - {car_id}:
                raise ExternalIdTaken(f"another car has the external id {external!r}")
            cover = photos[min(photos)].payload
            changes = edit_changes(cover, patch)
            if len(changes.get("attributes", cover.attributes)) > MAX_ATTRIBUTES:
                raise FieldError(f"at most {MAX_ATTRIBUTES} attributes per car")
            check_storable(changes)
            ledger.edit(car_id, patch)

            def apply(name: str) -> None:
                for stored in photos_of(self._engine, name, [car_id]):
                    if own := edit_changes(stored.payload, patch):
                        self._engine.set_payload(name, stored.id, own)

            served.for_each(apply)
        edited = [
            StoredCar(i, CarPayload.model_validate(p.payload.to_payload() | changes))
            for i, p in photos.items()
        ]
        return IndexedCar.of(car_id, edited)

    # -- browsing --------------------------------------------------------------------------
    def _cursor_key(self) -> bytes:
        if self._key is None:
            layout = self._layout
            path = layout.cursor_key
            with locked(layout.cursor_lock):
                if not path.is_file():
                    write_atomically(path, os.urandom(32))
                self._key = path.read_bytes()
        return self._key

    def page(
        self, collection: str, where: CarFilter, limit: int, cursor: str | None
    ) -> tuple[list[IndexedCar], str | None]:
        """One page of cars matching ``where`` (their covers do), with their photos, and the
        cursor of the next (None at the end)."""
        after = self._cursors.read(cursor, where) if cursor else None
        covers, following = self._engine.page(collection, replace(where, covers=True), limit, after)
        photos = photos_of(self._engine, collection, [c.car_id for c in covers])
        by_car: dict[str, list[StoredCar]] = {}
        for photo in photos:
            by_car.setdefault(photo.car_id, []).append(photo)
        cars = [IndexedCar.of(c.car_id, by_car.get(c.car_id) or [c]) for c in covers]
        page = [car for car in cars if car is not None]
        return page, None if following is None else self._cursors.give(following, where)

    # -- facets and refinement -------------------------------------------------------------
    def facet(
        self, collection: str, field: str, where: CarFilter, limit: int
    ) -> list[tuple[Any, int]]:
        """The most frequent values of ``field`` among the cars matching ``where``."""
        key = self._fields.facet_key(field)
        counts = self._engine.facet(collection, key, replace(where, covers=True), limit)
        return [(value, count) for value, count in counts if count > 0]

    def photo_counts(self, collection: str, car_ids: list[str]) -> dict[str, int]:
        """How many photos each of these cars has (one filtered read of their photos' car ids:
        cheaper than a facet, which counts over the whole collection)."""
        counts: dict[str, int] = {}
        for photo in photos_of(self._engine, collection, car_ids):
            counts[photo.car_id] = counts.get(photo.car_id, 0) + 1
        return counts

    def refinement(
        self,
        collection: str,
        examples: list[np.ndarray],
        positive: list[str],
        negative: list[str],
    ) -> Recommend:
        """A recommendation toward ``examples`` (vectors: the photos searched with, the car
        whose likes are asked for) and every photo of the ``positive`` cars, away from every
        photo of the ``negative`` ones; UnknownCars names ids that are not in ``collection``."""
        ids = list(dict.fromkeys(positive + negative))
        photos = photos_of(self._engine, collection, ids)
        stored = vectors_of(self._engine, collection, [p.id for p in photos])
        vectors: dict[str, list[np.ndarray]] = {}
        for photo in photos:
            if photo.id in stored:
                vectors.setdefault(photo.car_id, []).append(stored[photo.id])
        if missing := [i for i in ids if i not in vectors]:
            raise UnknownCars(missing)
        return Recommend(
            tuple(examples) + tuple(v for i in positive for v in vectors[i]),
            tuple(v for i in negative for v in vectors[i]),
        )
