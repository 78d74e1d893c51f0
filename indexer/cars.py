"""A car as the index holds it: one vehicle, its fields on each of its 1..N photos (one point
per photo, its car id in the payload). Adding a car, adding and deleting photos, deleting a car:
each made under the car's write lock, the ledger first, then every joined collection, the car's
cover settled (``indexer.covers``), so that no car is left with a photo the index lacks or a
point whose car is gone."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from indexer.copies import CopySignal
from indexer.covers import IndexedCar, photos_of, settle
from indexer.density import with_density
from indexer.engines.base import NewPoint
from indexer.fields import check_storable
from indexer.listing import Listings
from indexer.payload import (
    CarFields,
    CarPayload,
    Listing,
    StoredCar,
    edit_changes,
    new_car_id,
    photo_id,
    upload_payload,
)
from indexer.reuse import PhotoReused, Reused, find_reused
from indexer.served import IndexNotReady, ServedCollections
from indexer.versions import embedding_version_of


class NoSuchCar(LookupError):
    def __init__(self, car_id: str) -> None:
        super().__init__(f"no car with id {car_id}")


class NoSuchPhoto(LookupError):
    def __init__(self, car_id: str, photo: str) -> None:
        super().__init__(f"the car {car_id} has no photo {photo}")


class TooManyPhotos(ValueError):
    """A car would have more photos than allowed."""


OnReused = Literal["flag", "reject", "allow"]
"""What an add does with a photo another car has: add it and say so, refuse the add, or not
look."""


@dataclass(frozen=True)
class Added:
    """A car after an add, and what each photo added re-uses: photo id -> the other cars'
    photos (None: not looked for, or the photo has no copy signal and no exact copy)."""

    car: IndexedCar
    reused: dict[str, list[Reused] | None]


@dataclass(frozen=True)
class NewPhoto:
    """A photo to add: its bytes and format's file suffix, its size as shown, its vector."""

    data: bytes
    suffix: str
    size: tuple[int, int]
    vector: np.ndarray
    view: str | None = None
    signal: CopySignal | None = None  # its copy signal (None: none could be made)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def replacement(photos: Sequence[StoredCar], car: CarFields, listing: Listing) -> dict[str, Any]:
    """The edit that gives the car's ``photos`` these fields (attributes replaced, not merged)."""
    old = {name for p in photos for name in p.payload.attributes}
    attributes: dict[str, Any] = {name: None for name in old} | dict(listing.attributes)
    return car.car_fields() | {"external_id": listing.external_id, "attributes": attributes}


class CarWrites:
    def __init__(self, served: ServedCollections, listings: Listings, max_photos: int) -> None:
        self._served, self._engine, self._ledger = served, served.engine, served.ledger
        self._listings, self.max_photos = listings, max_photos

    def _check_count(self, count: int) -> None:
        if count > self.max_photos:
            raise TooManyPhotos(f"a car has at most {self.max_photos} photos ({count} asked)")

    def _lookup_collection(self, version: str) -> str:
        """Where the photos of other cars are looked up: the collection serving ``version``,
        else (a rollout: its build is joined, not live yet) a joined one of ``version``."""
        try:
            return self._served.serving(version)
        except IndexNotReady:
            joined = sorted(n for n in self._served.joined if embedding_version_of(n) == version)
            if not joined:
                raise
            return joined[0]

    def _reused(
        self, car_id: str, version: str, photos: Sequence[NewPhoto], on_reused: OnReused
    ) -> dict[str, list[Reused] | None]:
        """What the photos re-use of other cars (call within the car's lock); PhotoReused
        when ``on_reused`` is ``reject`` and one does."""
        ids = [photo_id(car_id, p.sha256) for p in photos]
        if on_reused == "allow":
            return dict.fromkeys(ids)
        collection = self._lookup_collection(version)
        found: dict[str, list[Reused] | None] = {}
        for pid, photo in zip(ids, photos, strict=True):
            found[pid] = find_reused(
                self._engine, collection, car_id, photo.sha256, photo.signal, photo.vector
            )
        if on_reused == "reject" and (hits := [r for rs in found.values() for r in rs or []]):
            raise PhotoReused(hits)
        return found

    def _keep(
        self,
        car_id: str,
        car: CarFields,
        listing: Listing,
        version: str,
        photos: Sequence[NewPhoto],
    ) -> list[NewPoint]:
        """The photos kept in the ledger (call within the car's lock), as points to write."""
        points = []
        for photo in photos:
            payload = upload_payload(
                car_id, car, listing, photo.sha256, photo.size, version, photo.view
            )
            if photo.signal is not None:
                payload = payload.model_copy(update=photo.signal.payload())
            upload = self._ledger.add(photo.data, photo.suffix, payload)
            points.append(NewPoint(upload.id, photo.vector, upload.payload))
        return points

    def _write(
        self,
        car_id: str,
        version: str,
        new: list[NewPoint],
        gone: list[str],
        edit: dict[str, Any] | None,
    ) -> None:
        """In every joined collection: the ``new`` points (those of ``version``), ``gone``
        deleted, the car's other photos edited, its cover settled."""
        engine = self._engine

        def apply(name: str) -> None:
            if embedding_version_of(name) == version and new:
                engine.upsert(name, with_density(engine, name, new))
            if gone:
                engine.delete(name, gone)
            if edit:
                for photo in photos_of(engine, name, [car_id]):
                    if changes := edit_changes(photo.payload, edit):
                        engine.set_payload(name, photo.id, changes)
            settle(engine, name, car_id)

        self._served.for_each(apply)
        if new:
            self._served.added(version)

    def add(
        self,
        version: str,
        photos: Sequence[NewPhoto],
        car: CarFields,
        listing: Listing,
        replace_photos: bool = False,
        on_reused: OnReused = "flag",
    ) -> Added:
        """A car added through the API with its ``photos`` (vectors of the embedding
        ``version``), kept in the ledger for every later build and searchable at once. When a
        car has its external id, its fields are replaced and the photos are added to its own
        (``replace_photos``: they replace them). Each photo is looked for among the other cars'
        (``on_reused``; PhotoReused, with nothing written, when refused). IndexNotReady, with
        nothing written, when no collection of those vectors that can go live is joined."""
        if not photos:
            raise ValueError("a car has at least one photo")
        self._check_count(len(photos))
        first = upload_payload("", car, listing, photos[0].sha256, photos[0].size, version)
        check_storable(first.to_payload(), "car")
        ledger, external = self._ledger, listing.external_id
        with self._served.writes(), ledger.claiming(external):
            self._served.check_open(version)
            found = self._listings.with_external_id(external) if external is not None else []
            car_id = found[0] if found else new_car_id(photos[0].sha256, external)
            with ledger.writing(car_id):
                before = self._served.car_photos(car_id)
                ids = [photo_id(car_id, p.sha256) for p in photos]
                kept = {} if replace_photos else {i: p for i, p in before.items() if i not in ids}
                self._check_count(len(kept) + len(set(ids)))
                reused = self._reused(car_id, version, photos, on_reused)
                new = self._keep(car_id, car, listing, version, photos)
                gone = {i: p.payload for i, p in before.items() if i not in kept and i not in ids}
                if gone:
                    ledger.delete(gone)
                edit = replacement(list(before.values()), car, listing) if before else None
                ledger.set_edit(car_id, edit)
                self._write(car_id, version, new, list(gone), edit)
        edited = [StoredCar(i, _with_edit(p.payload, edit)) for i, p in kept.items()]
        added = {p.id: StoredCar(p.id, p.payload) for p in new}
        return Added(_car(car_id, [*added.values(), *edited]), reused)

    def add_photos(
        self,
        version: str,
        car_id: str,
        photos: Sequence[NewPhoto],
        on_reused: OnReused = "flag",
    ) -> Added:
        """More photos of a car (NoSuchCar when there is none): they take its fields; looked
        for among the other cars' photos as ``add`` does."""
        if not photos:
            raise ValueError("at least one photo")
        with self._served.writes(), self._ledger.writing(car_id):
            self._served.check_open(version)
            before = self._served.car_photos(car_id)
            if not before:
                raise NoSuchCar(car_id)
            fields = before[min(before)].payload
            car = CarFields.model_validate(fields.car_fields())
            listing = Listing.model_validate(fields.listing_fields())
            ids = {photo_id(car_id, p.sha256) for p in photos}
            self._check_count(len(set(before) | ids))
            reused = self._reused(car_id, version, photos, on_reused)
            new = self._keep(car_id, car, listing, version, photos)
            self._write(car_id, version, new, [], None)
        added = {p.id: StoredCar(p.id, p.payload) for p in new}
        rest = [p for i, p in before.items() if i not in added]
        return Added(_car(car_id, [*added.values(), *rest]), reused)

    def delete(self, car_id: str) -> IndexedCar | None:
        """Delete a car for good: the ledger's tombstones of its photos (every later build and
        every collection joined later drops them), then every joined collection, its uploaded
        photos. Returns what was deleted, or None."""
        with self._served.writes(), self._ledger.writing(car_id):
            before = self._served.car_photos(car_id)
            self._delete(car_id, before)
        return IndexedCar.of(car_id, list(before.values()))

    def _delete(self, car_id: str, photos: dict[str, StoredCar]) -> None:
        if not photos:
            return
        self._ledger.delete({i: p.payload for i, p in photos.items()})
        self._ledger.set_edit(car_id, None)
        engine = self._engine

        def drop(name: str) -> None:
            engine.delete(name, [p.id for p in photos_of(engine, name, [car_id])])

        self._served.for_each(drop)

    def delete_photo(self, car_id: str, photo: str) -> IndexedCar | None:
        """Delete one photo of a car: what is left of the car, or None when it was the last
        (the car is deleted). NoSuchCar, NoSuchPhoto: nothing deleted."""
        with self._served.writes(), self._ledger.writing(car_id):
            before = self._served.car_photos(car_id)
            if not before:
                raise NoSuchCar(car_id)
            if photo not in before:
                raise NoSuchPhoto(car_id, photo)
            if len(before) == 1:
                self._delete(car_id, before)
                return None
            self._ledger.delete({photo: before[photo].payload})
            self._write(car_id, "", [], [photo], None)
        return _car(car_id, [p for i, p in before.items() if i != photo])


def _with_edit(payload: CarPayload, edit: dict[str, Any] | None) -> CarPayload:
    if not edit:
        return payload
    return CarPayload.model_validate(payload.to_payload() | edit_changes(payload, edit))


def _car(car_id: str, photos: list[StoredCar]) -> IndexedCar:
    car = IndexedCar.of(car_id, photos)
    assert car is not None
    return car
