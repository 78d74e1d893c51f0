"""What a car point holds: its id, its payload fields, the payload indexes, the filters a search
can apply, and what a stored point reads back as. Every other module uses these names.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from carembed.datasets import CarRecord

IndexKind = Literal["keyword", "integer"]
Source = Literal["gallery", "upload"]

PAYLOAD_INDEXES: dict[str, IndexKind] = {
    "make": "keyword",
    "model": "keyword",
    "body": "keyword",
    "class_name": "keyword",
    "source": "keyword",
    "year": "integer",
}
"""Fields with a payload index (the filters and the bookkeeping of builds use them)."""

_NAMESPACE = uuid.UUID("6f1c3f59-5d8e-4f8e-9a43-0c7c3a1f2b10")


def point_id(sha256_hex: str) -> str:
    """The same image bytes always get the same point id."""
    return str(uuid.uuid5(_NAMESPACE, sha256_hex))


class CarFields(BaseModel):
    """What is known about the car in a photo (the API shows these)."""

    make: str | None = None
    model: str | None = None
    year: int | None = None
    body: str | None = None
    class_name: str | None = None

    def car_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CarFields.model_fields}


class CarPayload(CarFields):
    """A point's whole payload: the car, its photo and how it was indexed. Manifest columns
    beyond these are kept as extra fields."""

    model_config = ConfigDict(extra="allow")

    path: str | None = None  # relative to the gallery root, or to the uploads folder
    sha256: str | None = None
    width: int | None = None  # as shown (EXIF orientation applied)
    height: int | None = None
    model_version: str | None = None
    indexed_at: str | None = None
    source: Source = "gallery"

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_fields(record: CarRecord) -> dict[str, Any]:
    """What a gallery record says about its photo (manifest columns included): the part of a
    payload a build keeps up to date when the photo itself did not change."""
    return {
        **record.extra,
        "make": record.make,
        "model": record.model,
        "year": record.year,
        "body": record.body,
        "class_name": record.class_name,
        "path": record.relative,
    }


def changed_fields(stored: dict[str, Any], record: CarRecord) -> dict[str, Any]:
    """The record's fields whose stored values differ (a photo moved to another class folder,
    a manifest column edited)."""
    return {k: v for k, v in record_fields(record).items() if stored.get(k) != v}


def gallery_payload(
    record: CarRecord, sha256: str, size: tuple[int, int], model_version: str
) -> CarPayload:
    core = {
        **record_fields(record),
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
    car: CarFields, sha256: str, filename: str, size: tuple[int, int], model_version: str
) -> CarPayload:
    name = car.class_name or " ".join(str(p) for p in (car.make, car.model, car.year) if p)
    return CarPayload(
        **(car.car_fields() | {"class_name": name or None}),
        path=filename,
        sha256=sha256,
        width=size[0],
        height=size[1],
        model_version=model_version,
        indexed_at=_now(),
        source="upload",
    )


@dataclass(frozen=True)
class Match:
    key: str
    value: str | int


@dataclass(frozen=True)
class Range:
    key: str
    gte: int | None = None
    lte: int | None = None


@dataclass(frozen=True)
class CarFilter:
    """Which cars a search may return."""

    make: str | None = None
    model: str | None = None
    body: str | None = None
    year_min: int | None = None
    year_max: int | None = None
    source: Source | None = None
    exclude_ids: frozenset[str] = field(default_factory=frozenset)

    def conditions(self) -> list[Match | Range]:
        """The conditions that must all hold, in engine-neutral form."""
        must: list[Match | Range] = [
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
        return must

    @property
    def empty(self) -> bool:
        return not self.conditions() and not self.exclude_ids


@dataclass(frozen=True)
class StoredCar:
    """A point as read back: its id, payload, and the score or vector when asked for."""

    id: str
    payload: CarPayload
    score: float | None = None
    vector: list[float] | None = None

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
