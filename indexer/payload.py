"""What a car point holds: its id, its payload fields, the filters a search can apply, and what
a stored point reads back as. Every other module uses these names (the filterable fields and
their payload indexes are in ``indexer.fields``).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from carembed.datasets import CarRecord
from indexer import merge_patch
from indexer.fields import (
    ATTRIBUTE_NAME,
    CAR_ID,
    COVER,
    MAX_EXTERNAL_ID,
    AttributeValue,
    Condition,
    FieldSchema,
    Match,
    MatchAny,
    Range,
)

logger = logging.getLogger(__name__)

Source = Literal["gallery", "upload"]

_NAMESPACE = uuid.UUID("6f1c3f59-5d8e-4f8e-9a43-0c7c3a1f2b10")


def point_id(sha256_hex: str) -> str:
    """The id of a car of one photo named after these bytes: that car's id, and its photo's."""
    return str(uuid.uuid5(_NAMESPACE, sha256_hex))


def photo_id(car_id: str, sha256_hex: str) -> str:
    """A photo's point id: the photo a car is named after has the car's id (a car of one photo
    keeps the id it had before cars had several photos); any other photo's id comes from its
    car and its bytes, so the same bytes can be a photo of two cars."""
    if car_id == point_id(sha256_hex):
        return car_id
    return str(uuid.uuid5(uuid.UUID(car_id), sha256_hex))


def new_car_id(first_sha256: str, external_id: str | None) -> str:
    """The id of a car added through the API: named after its first photo, and after its
    external id when it has one (two listings may share a photo)."""
    if external_id is None:
        return point_id(first_sha256)
    return str(uuid.uuid5(_NAMESPACE, f"{external_id}\n{first_sha256}"))


def gallery_car_id(sha256_hex: str, external_id: str | None) -> str:
    """A gallery photo's car: the photos of a manifest's rows that share an ``external_id``
    are one car's; a photo without one is a car of its own."""
    if external_id is None:
        return point_id(sha256_hex)
    return str(uuid.uuid5(_NAMESPACE, f"gallery\n{external_id}"))


class CarFields(BaseModel):
    """What is known about the car in a photo (the API shows these)."""

    make: str | None = None
    model: str | None = None
    year: int | None = None
    body: str | None = None
    class_name: str | None = None

    def car_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CarFields.model_fields}


class Listing(BaseModel):
    """What the owner of a car's listing attaches to it: their id and attributes."""

    external_id: str | None = Field(None, max_length=MAX_EXTERNAL_ID)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    def listing_fields(self) -> dict[str, Any]:
        return {"external_id": self.external_id, "attributes": dict(self.attributes)}


MAX_VIEW = 32
"""Longest ``view`` label of a photo (``front``, ``rear``, ``interior``, ...)."""

DENSITY = "density"
"""The payload field of a point's density in its collection (``indexer.density``)."""

EDITABLE = (*CarFields.model_fields, *Listing.model_fields)
"""The payload fields an edit may change."""


class CarPayload(CarFields, Listing):
    """A point's whole payload: the car, its listing, its photo and how it was indexed."""

    model_config = ConfigDict(extra="allow")

    car_id: str | None = None
    cover: bool | None = None
    view: str | None = Field(None, max_length=MAX_VIEW)
    path: str | None = None  # relative to the gallery root, or to the uploads folder
    sha256: str | None = None
    width: int | None = None  # as shown (EXIF orientation applied)
    height: int | None = None
    model_version: str | None = None
    indexed_at: str | None = None
    source: Source = "gallery"
    density: float | None = None  # in its collection (``indexer.density``)
    phash: str | None = None  # its copy signal (``indexer.copies``)
    phash_mirror: str | None = None
    phash_centre: str | None = None
    phash_parts: list[str] | None = None

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _attribute_name(column: str) -> str | None:
    name = re.sub(r"[^a-z0-9_]", "_", column.strip().lower())
    return name if ATTRIBUTE_NAME.fullmatch(name) else None


NOT_ATTRIBUTES = ("external_id", "view", "car_id", "photo_id")
"""Manifest columns that say which car a photo is of and how (an exported dataset has them)."""


def record_fields(record: CarRecord, schema: FieldSchema) -> dict[str, Any]:
    """What a gallery record says about its photo: the part of a payload a build keeps up to
    date when the photo itself did not change. A manifest's ``external_id`` column is the
    car's external id (rows that share one are one car's photos), ``view`` the photo's view;
    its other columns are attributes (names lower-cased, other characters as ``_``; declared
    ones read as their kind)."""
    attributes: dict[str, AttributeValue] = {}
    for column, text in record.extra.items():
        if column in NOT_ATTRIBUTES:
            continue
        name = _attribute_name(column)
        if name is None:
            logger.warning("manifest column %r cannot be an attribute name: not kept", column)
            continue
        attributes[name] = schema.from_text(name, text)
    external = record.extra.get("external_id")
    return {
        "external_id": external[:MAX_EXTERNAL_ID] if external else None,
        "attributes": attributes,
        "make": record.make,
        "model": record.model,
        "year": record.year,
        "body": record.body,
        "class_name": record.class_name,
        "view": (record.extra.get("view") or None) and record.extra["view"][:MAX_VIEW],
        "path": record.relative,
    }


def changed_fields(stored: Mapping[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The ``fields`` whose stored values differ (a photo moved to another class folder, a
    manifest column edited)."""
    return {k: v for k, v in fields.items() if stored.get(k) != v}


def edited(fields: dict[str, Any], edit: dict[str, Any] | None) -> dict[str, Any]:
    """``fields`` (of a payload) with an edit applied: a JSON merge patch (``None`` clears a
    field or removes an attribute). A change of make, model or year without a class name
    renames the class."""
    if not edit:
        return fields
    result: dict[str, Any] = merge_patch.apply(fields, edit)
    if "class_name" not in edit and {"make", "model", "year"} & set(edit):
        result["class_name"] = class_name_of(result) or fields.get("class_name")
    return result


def edit_changes(payload: CarPayload, edit: dict[str, Any]) -> dict[str, Any]:
    """The payload fields an edit changes, with their new values (None: cleared)."""
    stored = payload.to_payload()
    current = {name: stored.get(name) for name in EDITABLE}
    after = edited(current, edit)
    return {name: after.get(name) for name in EDITABLE if after.get(name) != current[name]}


def class_name_of(fields: dict[str, Any]) -> str | None:
    """``"<make> <model> <year>"`` from what is known of the three."""
    name = " ".join(str(fields[p]) for p in ("make", "model", "year") if fields.get(p))
    return name or None


def gallery_payload(
    fields: dict[str, Any], sha256: str, size: tuple[int, int], model_version: str
) -> CarPayload:
    """``fields``: the record's (``record_fields``), with the car's edit applied."""
    core = {
        **fields,
        "sha256": sha256,
        "width": size[0],
        "height": size[1],
        "model_version": model_version,
        "indexed_at": _now(),
        "source": "gallery",
    }
    return CarPayload.model_validate(core)


def reindexed(payload: CarPayload, size: tuple[int, int], model_version: str) -> CarPayload:
    """The same car's payload for a vector of another model."""
    update = {"width": size[0], "height": size[1], "model_version": model_version}
    return payload.model_copy(update=update | {"indexed_at": _now()})


def upload_payload(
    car_id: str,
    car: CarFields,
    listing: Listing,
    sha256: str,
    size: tuple[int, int],
    model_version: str,
    view: str | None = None,
) -> CarPayload:
    """A photo added through the API to the car ``car_id`` (its file is named by the ledger)."""
    name = car.class_name or class_name_of(car.car_fields())
    return CarPayload(
        **(car.car_fields() | {"class_name": name}),
        **listing.listing_fields(),
        car_id=car_id,
        view=view,
        sha256=sha256,
        width=size[0],
        height=size[1],
        model_version=model_version,
        indexed_at=_now(),
        source="upload",
    )


@dataclass(frozen=True)
class CarFilter:
    """Which cars a search may return."""

    make: str | None = None
    model: str | None = None
    body: str | None = None
    year_min: int | None = None
    year_max: int | None = None
    source: Source | None = None
    exclude_ids: frozenset[str] = field(default_factory=frozenset)  # photo (point) ids
    where: tuple[Condition, ...] = ()  # from a filter object (``FieldSchema.parse_filter``)
    cars: frozenset[str] | None = None  # only the photos of these cars
    exclude_cars: frozenset[str] = field(default_factory=frozenset)
    covers: bool = False  # only each car's cover photo: one point per car

    def conditions(self) -> list[Condition]:
        """The conditions that must all hold, in engine-neutral form."""
        must: list[Condition] = [
            Match(key, value)
            for key, value in (
                ("make", self.make),
                ("model", self.model),
                ("body", self.body),
                ("source", self.source),
            )
            if value
        ]
        if self.year_min is not None or self.year_max is not None:
            must.append(Range("year", self.year_min, self.year_max))
        if self.cars is not None:
            must.append(MatchAny(CAR_ID, tuple(sorted(self.cars))))
        if self.covers:
            must.append(Match(COVER, True))
        return must + list(self.where)

    def exclusions(self) -> list[Condition]:
        """The conditions that must not hold (besides ``exclude_ids``)."""
        return [MatchAny(CAR_ID, tuple(sorted(self.exclude_cars)))] if self.exclude_cars else []

    @property
    def empty(self) -> bool:
        return not self.conditions() and not self.exclude_ids and not self.exclude_cars


@dataclass(frozen=True)
class StoredCar:
    """A point as read back: its id, payload, and the score or vector when asked for."""

    id: str
    payload: CarPayload
    score: float | None = None
    vector: list[float] | None = None

    @property
    def car_id(self) -> str:
        """The car this photo belongs to (a photo stored without one is a car of its own)."""
        return self.payload.car_id or self.id

    @classmethod
    def from_point(
        cls,
        pid: object,
        payload: dict[str, Any] | None,
        score: float | None = None,
        vector: Any = None,
    ) -> StoredCar:
        return cls(
            str(pid),
            CarPayload.model_validate(payload or {}),
            None if score is None else float(score),
            None if vector is None else [float(v) for v in vector],
        )
