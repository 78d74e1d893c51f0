"""The API's models of a car and its photos (what OpenAPI documents)."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field
from pydantic.config import JsonDict

from indexer import (
    MAX_EXTERNAL_ID,
    Added,
    AttributeValue,
    CarFields,
    IndexedCar,
    Listing,
    Reused,
    StoredCar,
)

CarText = Annotated[str, StringConstraints(max_length=100)]
"""A make, model or body as the API takes it (a form field, a batch entry, a patch, a filter)."""
ClassNameText = Annotated[str, StringConstraints(max_length=200)]
Year = Annotated[int, Ge(1800), Le(2200)]
ExternalIdText = Annotated[str, StringConstraints(max_length=MAX_EXTERNAL_ID)]


def car_image_url(car_id: str, photo_id: str, size: Literal["full", "thumb"]) -> str:
    """Where the API serves a car's photo (``GET /api/v1/cars/{id}/photos/{photo_id}/image``)."""
    return f"/api/v1/cars/{car_id}/photos/{photo_id}/image?size={size}"


EXAMPLE_VERSION = "efficientnetlite0-skip-1f07ee78fb05-int8"
EXAMPLE_ID = "0b5e2d8a-6c1f-5a43-9d53-1f0c2a7e9b44"
EXAMPLE_PHOTO = "5d41c3a9-2b7e-5f10-8c4d-7a9e3b2f6c18"
EXAMPLE_LISTING: JsonDict = {
    "external_id": "listing-48213",
    "attributes": {"price": 18500.0, "mileage": 64000, "color": "red", "available": True},
}

EXAMPLE_PHOTO_JSON: JsonDict = {
    "id": EXAMPLE_PHOTO,
    "view": "front",
    "width": 640,
    "height": 480,
    "image_url": car_image_url(EXAMPLE_ID, EXAMPLE_PHOTO, "full"),
    "thumb_url": car_image_url(EXAMPLE_ID, EXAMPLE_PHOTO, "thumb"),
}
EXAMPLE_CAR: JsonDict = {
    "id": EXAMPLE_ID,
    "make": "Audi",
    "model": "TTS Coupe",
    "year": 2012,
    "body": "Coupe",
    "class_name": "Audi TTS Coupe 2012",
    **EXAMPLE_LISTING,
    "width": 640,
    "height": 480,
    "source": "upload",
    "embedding_version": EXAMPLE_VERSION,
    "indexed_at": "2026-12-02T10:00:00+00:00",
    "image_url": car_image_url(EXAMPLE_ID, EXAMPLE_PHOTO, "full"),
    "thumb_url": car_image_url(EXAMPLE_ID, EXAMPLE_PHOTO, "thumb"),
    "photos_count": 1,
    "photos": [EXAMPLE_PHOTO_JSON],
}


class Photo(BaseModel):
    """One photo of a car."""

    id: str
    view: str | None = None
    width: int | None = None
    height: int | None = None
    image_url: str
    thumb_url: str

    @classmethod
    def of(cls, car_id: str, photo: StoredCar) -> Photo:
        payload = photo.payload
        return cls(
            id=photo.id,
            view=payload.view,
            width=payload.width,
            height=payload.height,
            image_url=car_image_url(car_id, photo.id, "full"),
            thumb_url=car_image_url(car_id, photo.id, "thumb"),
        )


EMBEDDING_VERSION_DESCRIPTION = (
    "the embedding version: model version and precision (f32 or int8) of the vectors"
)
MODEL_VERSION_DEPRECATION = "deprecated: the embedding_version under its old name"


class EmbeddedBy(BaseModel):
    """Says which vectors answered: ``embedding_version``, and under its old name the
    deprecated ``model_version`` (it always held the embedding version)."""

    embedding_version: str | None = Field(None, description=EMBEDDING_VERSION_DESCRIPTION)

    @computed_field(  # type: ignore[prop-decorator]
        description=MODEL_VERSION_DEPRECATION, json_schema_extra={"deprecated": True}
    )
    @property
    def model_version(self) -> str | None:
        return self.embedding_version


class Car(CarFields, Listing, EmbeddedBy):
    """A car: its fields, and its photos (the first is its cover: the one shown for it)."""

    id: str
    width: int | None = Field(None, description="the cover photo's")
    height: int | None = None
    source: str | None = None
    indexed_at: str | None = None
    image_url: str = Field(description="the cover photo")
    thumb_url: str
    photos_count: int = 1
    photos: list[Photo] = Field(default_factory=list)

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_CAR]})

    @classmethod
    def of(cls, car: IndexedCar) -> Car:
        payload, cover = car.payload, car.cover
        return cls(
            id=car.id,
            image_url=car_image_url(car.id, cover.id, "full"),
            thumb_url=car_image_url(car.id, cover.id, "thumb"),
            width=payload.width,
            height=payload.height,
            source=payload.source,
            embedding_version=payload.model_version,
            indexed_at=payload.indexed_at,
            photos_count=len(car.photos),
            photos=[Photo.of(car.id, p) for p in car.photos],
            **payload.car_fields(),
            **payload.listing_fields(),
        )


class ReusedPhoto(BaseModel):
    """Another car's photo that a photo added is (a copy: ``exact`` bytes, or ``near``:
    resized, recompressed, cropped, brightened, stamped or mirrored)."""

    photo: str = Field(description="the photo added, of this car")
    car_id: str
    photo_id: str
    external_id: str | None = None
    kind: Literal["exact", "near"]
    similarity: float = Field(description="of the two photos' perceptual hashes (1: the same)")

    @classmethod
    def of(cls, photo: str, reused: Reused) -> ReusedPhoto:
        """The other car's photo that ``photo`` is."""
        return cls(
            photo=photo,
            car_id=reused.car_id,
            photo_id=reused.photo_id,
            external_id=reused.external_id,
            kind=reused.kind,
            similarity=reused.similarity,
        )


def reused_photos(found: dict[str, list[Reused] | None]) -> list[ReusedPhoto]:
    """Each photo's re-uses, photo by photo (None: none looked for)."""
    return [ReusedPhoto.of(pid, r) for pid, reused in found.items() for r in reused or []]


class AddedCar(Car):
    """A car added (or given photos): the car, and which of its new photos other cars have."""

    reused: list[ReusedPhoto] | None = Field(
        None, description="other cars' photos that the photos added are (null: not looked for)"
    )
    reused_reason: str | None = Field(
        None, description="why some photos were not looked for, or only for exact copies"
    )

    @classmethod
    def added(cls, added: Added, looked: bool) -> AddedCar:
        unchecked = sorted(pid for pid, found in added.reused.items() if found is None)
        reason = None
        if not looked:
            reason = "not looked for (on_reused=allow)"
        elif unchecked:
            reason = (
                f"photos {', '.join(unchecked)} are too plain for a copy signal: only exact "
                "copies of them were looked for"
            )
        fields = Car.of(added.car).model_dump()
        if not looked or len(unchecked) == len(added.reused):
            return cls(**fields, reused=None, reused_reason=reason)
        return cls(**fields, reused=reused_photos(added.reused), reused_reason=reason)


class PhotoReuse(BaseModel):
    """One photo of a car and the other cars' photos it is."""

    photo_id: str
    reused: list[ReusedPhoto] | None = Field(None, description="null: no copy signal")


class CarReuse(BaseModel):
    car_id: str
    photos: list[PhotoReuse]


class NewCar(CarFields, Listing):
    """What is known of a car added through the API (one entry of a bulk add's ``cars``)."""

    model_config = ConfigDict(extra="forbid")

    make: CarText | None = None
    model: CarText | None = None
    year: Year | None = None
    body: CarText | None = None
    class_name: ClassNameText | None = None


class CarPatch(BaseModel):
    """A JSON merge patch of a car: the fields sent replace the stored ones (``null`` clears
    one); ``attributes`` are merged (``null`` removes one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"year": 2011, "attributes": {"price": 17900.0, "available": None}}]
        },
    )

    make: CarText | None = None
    model: CarText | None = None
    year: Year | None = None
    body: CarText | None = None
    class_name: ClassNameText | None = None
    external_id: ExternalIdText | None = None
    attributes: dict[str, AttributeValue | None] | None = None


class CarList(BaseModel):
    """One page of cars; ``next_cursor`` fetches the next (null: this was the last)."""

    cars: list[Car]
    next_cursor: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cars": [EXAMPLE_CAR],
                    "next_cursor": "eyJhZnRlciI6ICIxYjRlIn0.6c0f2d1e9a8b7c6d5e4f3a2b1c0d9e8f",
                }
            ]
        }
    )
