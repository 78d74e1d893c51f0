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
from indexer.fields import (
    ATTRIBUTE_NAME,
    MAX_EXTERNAL_ID,
    AttributeValue,
    Condition,
    FieldSchema,
    Match,
    Range,
)

logger = logging.getLogger(__name__)

Source = Literal["gallery", "upload"]

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


class Listing(BaseModel):
    """What the owner of a car's listing attaches to it: their id and attributes."""

    external_id: str | None = Field(None, max_length=MAX_EXTERNAL_ID)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    def listing_fields(self) -> dict[str, Any]:
        return {"external_id": self.external_id, "attributes": dict(self.attributes)}


DENSITY = "density"
"""The payload field of a point's density in its collection (``indexer.density``)."""

EDITABLE = (*CarFields.model_fields, *Listing.model_fields)
"""The payload fields an edit may change."""


class CarPayload(CarFields, Listing):
    """A point's whole payload: the car, its listing, its photo and how it was indexed."""

    model_config = ConfigDict(extra="allow")

    path: str | None = None  # relative to the gallery root, or to the uploads folder
    sha256: str | None = None
    width: int | None = None  # as shown (EXIF orientation applied)
    height: int | None = None
    model_version: str | None = None
    indexed_at: str | None = None
    source: Source = "gallery"
    density: float | None = None  # in its collection (``indexer.density``)

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _attribute_name(column: str) -> str | None:
    name = re.sub(r"[^a-z0-9_]", "_", column.strip().lower())
    return name if ATTRIBUTE_NAME.fullmatch(name) else None


def record_fields(record: CarRecord, schema: FieldSchema) -> dict[str, Any]:
    """What a gallery record says about its photo: the part of a payload a build keeps up to
    date when the photo itself did not change. A manifest's ``external_id`` column is the
    car's external id, its other columns are attributes (names lower-cased, other characters
    as ``_``; declared ones read as their kind)."""
    attributes: dict[str, AttributeValue] = {}
    for column, text in record.extra.items():
        if column == "external_id":
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
        "path": record.relative,
    }


def changed_fields(stored: Mapping[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The ``fields`` whose stored values differ (a photo moved to another class folder, a
    manifest column edited)."""
    return {k: v for k, v in fields.items() if stored.get(k) != v}


def edited(fields: dict[str, Any], edit: dict[str, Any] | None) -> dict[str, Any]:
    """``fields`` (of a payload) with an edit applied, as a JSON merge patch: its car fields
    and external id replace the stored ones, its attributes are merged (``None`` removes
    one). A change of make, model or year without a class name renames the class."""
    if not edit:
        return fields
    result = dict(fields)
    for name, value in edit.items():
        if name != "attributes":
            result[name] = value
    attributes = dict(result.get("attributes") or {})
    for name, value in (edit.get("attributes") or {}).items():
        if value is None:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    result["attributes"] = attributes
    if "class_name" not in edit and {"make", "model", "year"} & set(edit):
        result["class_name"] = class_name_of(result) or result.get("class_name")
    return result


def edit_changes(payload: CarPayload, edit: dict[str, Any]) -> dict[str, Any]:
    """The payload fields an edit changes, with their new values."""
    stored = payload.to_payload()
    current = {name: stored.get(name) for name in EDITABLE}
    return changed_fields(current, edited(current, edit))


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
    car: CarFields,
    sha256: str,
    filename: str,
    size: tuple[int, int],
    model_version: str,
    listing: Listing | None = None,
) -> CarPayload:
    name = car.class_name or class_name_of(car.car_fields())
    return CarPayload(
        **(car.car_fields() | {"class_name": name}),
        **(listing or Listing()).listing_fields(),
        path=filename,
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
    exclude_ids: frozenset[str] = field(default_factory=frozenset)
    where: tuple[Condition, ...] = ()  # from a filter object (``FieldSchema.parse_filter``)

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
        return must + list(self.where)

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
