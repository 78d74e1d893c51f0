"""Adding cars through the API, one or a batch: one decode per photo (the model's input and
its thumbnail), forward passes shared by a batch, then the ledger, the index and the
thumbnail written."""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.deps import decoding, json_field, store
from app.problems import Problem
from app.registry import ServingModel
from app.routes.images import jpeg_thumbnail
from app.schemas import Car, NewCar
from app.services import Services
from carembed.atomic import write_atomically
from carembed.embedder import load_for_model
from carembed.images import ImageLimits, load_image_with_size
from carembed.preprocess import Preprocessing
from carembed.region import Box
from indexer.fields import FieldError
from indexer.payload import CarFields, Listing


@dataclass(frozen=True)
class Prepared:
    """A decoded photo: its bytes, the model's input, its size as shown, its thumbnail."""

    data: bytes
    array: np.ndarray
    size: tuple[int, int]
    thumbnail: bytes


def _prepare_with_thumbnail(
    data: bytes, preprocessing: Preprocessing, limits: ImageLimits, side: int
) -> tuple[np.ndarray, tuple[int, int], bytes]:
    """One decode of an added photo, the one search and indexing make (so its vector is
    theirs): the model's input, its size as shown, its thumbnail."""
    image, size = load_for_model(data, preprocessing, limits)
    return preprocessing.to_array(image), size, jpeg_thumbnail(image, size, side)


def _crop(data: bytes, box: Box, limits: ImageLimits) -> bytes:
    image, _ = load_image_with_size(data, limits, box=box)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return buf.getvalue()


async def cropped(services: Services, serving: ServingModel, data: bytes, box: Box) -> bytes:
    """The region ``box`` of a photo at its full resolution, as a JPEG: what an add with a box
    stores (every later build embeds that region, and the car's photo shows it)."""
    limits = serving.embedder.limits
    return await decoding(services, serving, data, _crop, box, limits, box=box, whole=True)


async def prepare(services: Services, serving: ServingModel, data: bytes) -> Prepared:
    embedder = serving.embedder
    array, size, thumbnail = await decoding(
        services,
        serving,
        data,
        _prepare_with_thumbnail,
        embedder.preprocessing,
        embedder.limits,
        services.settings.thumb_size,
    )
    return Prepared(data, array, size, thumbnail)


def checked(services: Services, car: NewCar) -> NewCar:
    """``car`` with its attributes checked against the declared ones (422 otherwise)."""
    try:
        services.index.fields.check_attributes(car.attributes)
    except FieldError as exc:
        raise Problem(422, "invalid-request", "Invalid attributes", str(exc)) from exc
    return car


def new_car(services: Services, fields: dict[str, Any], attributes: str | None) -> NewCar:
    """A car from form fields and an ``attributes`` field holding a JSON object."""
    given = json_field("attributes", attributes)
    try:
        car = NewCar.model_validate(fields | {"attributes": {} if given is None else given})
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid car", str(exc)) from exc
    return checked(services, car)


def new_cars(services: Services, text: str | None, photos: int) -> list[NewCar]:
    """The ``cars`` field of a bulk add: a JSON array with one object per photo."""
    given = json_field("cars", text)
    if given is None:
        return [NewCar() for _ in range(photos)]
    if not isinstance(given, list) or len(given) != photos:
        raise Problem(
            422,
            "invalid-request",
            "Invalid cars",
            f"cars is a JSON array with one object per photo ({photos})",
        )
    cars = []
    for position, entry in enumerate(given):
        try:
            cars.append(checked(services, NewCar.model_validate(entry)))
        except ValueError as exc:
            raise Problem(
                422, "invalid-request", "Invalid car", f"cars[{position}]: {exc}"
            ) from exc
    external = [c.external_id for c in cars if c.external_id is not None]
    if len(external) != len(set(external)):  # each would replace the one before
        raise Problem(
            422, "invalid-request", "Invalid cars", "an external_id appears twice in cars"
        )
    return cars


async def store_car(
    services: Services, serving: ServingModel, photo: Prepared, vector: np.ndarray, car: NewCar
) -> Car:
    """Keep the car: ledger and index (a car with the same external id is replaced), then
    its thumbnail."""
    with Image.open(io.BytesIO(photo.data)) as probe:  # already decoded once: only its format
        suffix = (probe.format or "img").lower()
    try:
        added = await store(
            services,
            services.index.add_photo,
            serving.version,
            photo.data,
            suffix,
            photo.size,
            vector,
            CarFields.model_validate(car.car_fields()),
            Listing.model_validate(car.listing_fields()),
        )
    except OSError as exc:  # the disk is full or read-only: nothing half-written stays
        raise Problem(
            507, "insufficient-storage", "Cannot store the photo", "the service's disk is full"
        ) from exc
    await asyncio.to_thread(_keep_thumbnail, services.thumbs_dir / f"{added.id}.jpg", photo)
    return Car.of(added)


def _keep_thumbnail(target: Path, photo: Prepared) -> None:
    """The thumbnail made with the photo's decode (a thumbnail can always be made again on
    request: a disk that refuses it loses nothing)."""
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, photo.thumbnail)
