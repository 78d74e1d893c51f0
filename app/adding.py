"""Adding cars and photos through the API, one car or a batch: one decode per photo (the model's
input and its thumbnail), one forward pass for a car's photos, then the ledger, the index and
the thumbnails written."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from pydantic import Field, Json, TypeAdapter

from app.car_schemas import AddedCar, NewCar
from app.deps import JSON_OBJECT, decoding, json_field, store
from app.problems import Problem
from app.registry import ServingModel
from app.services import Services
from app.thumbnails import jpeg_thumbnail
from carembed.atomic import write_atomically
from carembed.embedder import load_for_model
from carembed.images import ImageLimits, load_image_with_size
from carembed.preprocess import Preprocessing
from carembed.region import Box
from indexer import (
    MAX_VIEW,
    Added,
    CarFields,
    CopySignal,
    Listing,
    NewPhoto,
    OnReused,
    photo_id,
    signal_of,
)


@dataclass(frozen=True)
class Prepared:
    """A decoded photo: its bytes, the model's input, its size as shown, its thumbnail."""

    data: bytes
    array: np.ndarray
    size: tuple[int, int]
    thumbnail: bytes
    signal: CopySignal | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _prepare_with_thumbnail(
    data: bytes, preprocessing: Preprocessing, limits: ImageLimits, side: int
) -> tuple[np.ndarray, tuple[int, int], bytes, CopySignal | None]:
    """The decode of an added photo that search and indexing make (so its vector is theirs):
    the model's input, its size as shown, its thumbnail; and its copy signal (from a small
    decode of its own, as builds make it)."""
    image, size = load_for_model(data, preprocessing, limits)
    thumbnail = jpeg_thumbnail(image, size, side)
    return preprocessing.to_array(image), size, thumbnail, signal_of(data)


def _crop(data: bytes, box: Box, limits: ImageLimits) -> bytes:
    image, _ = load_image_with_size(data, limits, box=box)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return buf.getvalue()


async def cropped(services: Services, serving: ServingModel, data: bytes, box: Box) -> bytes:
    """The region ``box`` of a photo at its full resolution, as a JPEG: what an add with a box
    stores (every later build embeds that region, and the car's photo shows it)."""
    limits = serving.embedder.limits
    return await decoding(services, serving, data, (box, True), _crop, box, limits)


async def prepare(services: Services, serving: ServingModel, data: bytes) -> Prepared:
    embedder = serving.embedder
    array, size, thumbnail, signal = await decoding(
        services,
        serving,
        data,
        (None, False),
        _prepare_with_thumbnail,
        embedder.preprocessing,
        embedder.limits,
        services.settings.thumb_size,
    )
    return Prepared(data, array, size, thumbnail, signal)


C = TypeVar("C", bound=NewCar)


def checked(services: Services, car: C) -> C:
    """``car`` with its attributes checked against the declared ones (422 otherwise)."""
    services.index.fields.check_attributes(car.attributes)
    return car


def new_car(services: Services, fields: dict[str, Any], attributes: str | None) -> NewCar:
    """A car from form fields and an ``attributes`` field holding a JSON object."""
    given = json_field("attributes", attributes, JSON_OBJECT)
    try:
        car = NewCar.model_validate(fields | {"attributes": given or {}})
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid car", str(exc)) from exc
    return checked(services, car)


class BatchCar(NewCar):
    """One car of a batch add: its fields and how many of the photos sent are its own."""

    photos: int = Field(1, ge=1, description="the next this many photos of 'images' are its")
    views: list[str | None] | None = None


BATCH_CARS: TypeAdapter[list[BatchCar]] = TypeAdapter(Json[list[BatchCar]])


def new_cars(services: Services, text: str | None, photos: int) -> list[BatchCar]:
    """The ``cars`` field of a batch add: a JSON array of car objects, each taking the next
    ``photos`` (default 1) of the photos sent, in order; without it, one car per photo."""
    given = json_field("cars", text, BATCH_CARS)
    if given is None:
        return [BatchCar() for _ in range(photos)]
    if not given:
        raise Problem(422, "invalid-request", "Invalid cars", "cars is a JSON array of cars")
    cars = [checked(services, car) for car in given]
    if sum(c.photos for c in cars) != photos:
        raise Problem(
            422,
            "invalid-request",
            "Photos and cars do not add up",
            f"the cars take {sum(c.photos for c in cars)} photos ('photos' of each, default 1); "
            f"{photos} were sent",
        )
    external = [c.external_id for c in cars if c.external_id is not None]
    if len(external) != len(set(external)):  # the second would change the first
        raise Problem(
            422, "invalid-request", "Invalid cars", "an external_id appears twice in cars"
        )
    return cars


def views_of(views: list[str | None] | None, photos: int) -> list[str | None]:
    """One view label per photo (none given: none), each at most ``MAX_VIEW`` characters."""
    if not views:
        return [None] * photos
    if len(views) != photos:
        raise Problem(
            422, "invalid-request", "Invalid views", f"one view per photo ({photos}), in order"
        )
    if any(v is not None and len(v) > MAX_VIEW for v in views):
        raise Problem(
            422, "invalid-request", "Invalid views", f"a view has at most {MAX_VIEW} characters"
        )
    return [v.strip() or None if v is not None else None for v in views]


def _suffix(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as probe:  # already decoded once: only its format
        return (probe.format or "img").lower()


def new_photos(
    photos: list[Prepared], vectors: Sequence[np.ndarray], views: list[str | None]
) -> list[NewPhoto]:
    return [
        NewPhoto(p.data, _suffix(p.data), p.size, v, view, p.signal)
        for p, v, view in zip(photos, vectors, views, strict=True)
    ]


async def stored(
    services: Services, write: Callable[[], Added], photos: list[Prepared], looked: bool
) -> AddedCar:
    """The car after ``write`` (an index write, on the store's threads), then the thumbnails of
    the ``photos`` it added."""
    try:
        added = await store(services, write)
    except OSError as exc:  # the disk is full or read-only: nothing half-written stays
        raise Problem(
            507, "insufficient-storage", "Cannot store the photo", "the service's disk is full"
        ) from exc
    for photo in photos:
        target = services.thumbs_dir / f"{photo_id(added.car.id, photo.sha256)}.jpg"
        await asyncio.to_thread(_keep_thumbnail, target, photo)
    return AddedCar.added(added, looked)


async def store_car(
    services: Services,
    serving: ServingModel,
    photos: list[Prepared],
    vectors: Sequence[np.ndarray],
    car: NewCar,
    views: list[str | None],
    on_reused: OnReused | None,
    replace_photos: bool = False,
) -> AddedCar:
    """Keep the car and its photos: ledger and index (a car with the same external id gets
    these fields and photos; photos other cars have flagged, refused or let be), then the
    thumbnails."""
    cars, policy = services.index.cars, on_reused or services.settings.reused_photos
    write = partial(
        cars.add,
        serving.version,
        new_photos(photos, vectors, views),
        CarFields.model_validate(car.car_fields()),
        Listing.model_validate(car.listing_fields()),
        replace_photos,
        policy,
    )
    return await stored(services, write, photos, policy != "allow")


async def store_photos(
    services: Services,
    serving: ServingModel,
    car_id: str,
    photos: list[Prepared],
    vectors: Sequence[np.ndarray],
    views: list[str | None],
    on_reused: OnReused | None,
) -> AddedCar:
    """More photos of a car, kept as ``store_car`` keeps a car's."""
    cars, policy = services.index.cars, on_reused or services.settings.reused_photos
    new = new_photos(photos, vectors, views)
    write = partial(cars.add_photos, serving.version, car_id, new, policy)
    return await stored(services, write, photos, policy != "allow")


def _keep_thumbnail(target: Path, photo: Prepared) -> None:
    """The thumbnail made with the photo's decode (a thumbnail can always be made again on
    request: a disk that refuses it loses nothing)."""
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, photo.thumbnail)
