"""What a build must do to a collection, planned as a pure function: what should be there (the
gallery, the cars added and deleted through the API, their edits) against what is there (the
collection's points, and a collection of the same embedding version whose vectors can be
copied). No store and no model here: ``indexer.build`` reads the inputs and carries out the
plan, the same way on both engines."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from carembed.images import ImageError
from indexer.copies import CopySignal, signal_of
from indexer.fields import CAR_ID, FieldSchema
from indexer.gallery import GalleryItem, GalleryScan
from indexer.ledger import AddedPhoto, Ledger
from indexer.payload import (
    EDITABLE,
    CarPayload,
    StoredCar,
    changed_fields,
    edited,
    gallery_payload,
    record_fields,
    reindexed,
)
from indexer.writes import Todo, upload_todo

PayloadFor = Callable[[StoredCar], CarPayload]
"""The payload a copied point gets, given the point it is copied from."""

SKIPPED_KEY = "carsearch_skipped_sha256"
"""Collection metadata: the gallery photos its build found unusable (by hash)."""
GALLERY_KEY = "carsearch_gallery_digest"
"""Collection metadata: the gallery as described when it was built (``gallery_digest``)."""
GALLERY_ROOT_KEY = "carsearch_gallery_root"
"""Collection metadata: the gallery folder its build read."""


@dataclass(frozen=True)
class Desired:
    """What a collection should hold."""

    items: list[GalleryItem]  # the gallery's photos, less those deleted or added through the API
    uploads: dict[str, AddedPhoto]  # id -> car added through the API, still there (edited)
    tombstones: set[str]
    edits: dict[str, dict[str, Any]]  # car id -> the car's edit
    schema: FieldSchema

    @classmethod
    def of(cls, scan: GalleryScan, ledger: Ledger | None, schema: FieldSchema) -> Desired:
        dead = ledger.tombstones() if ledger else set()
        uploads = {u.id: u for u in (ledger.uploads() if ledger else []) if u.id not in dead}
        # A photo added through the API that the gallery also holds is the car added: its
        # make, external id and attributes are the ones given through the API.
        items = [i for i in scan.items if i.id not in dead and i.id not in uploads]
        return cls(items, uploads, dead, ledger.edits() if ledger else {}, schema)

    def fields(self, item: GalleryItem) -> dict[str, Any]:
        """A gallery photo's payload fields: its record's and its car's, with the car's edit
        applied."""
        fields = record_fields(item.record, self.schema) | {CAR_ID: item.car_id}
        return edited(fields, self.edits.get(item.car_id))


def gallery_digest(scan: GalleryScan, schema: FieldSchema) -> str:
    """What the gallery says, as one hash: photos, paths and the metadata of each."""
    rows = sorted((i.id, record_fields(i.record, schema)) for i in scan.items)
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class SyncPlan:
    """The operations that make a collection hold what it should."""

    embed: list[Todo] = field(default_factory=list)  # photos to embed and write
    copy: dict[str, PayloadFor] = field(default_factory=dict)  # vectors copied, new payloads
    update: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> changed fields
    keep: set[str] = field(default_factory=set)  # what stays, if every embedding succeeds
    unchanged: int = 0  # gallery photos neither embedded nor copied

    def deletes(self, existing: Mapping[str, Any], failed: set[str]) -> list[str]:
        """The points to delete once the embeddings are written: those not kept, and those
        whose photo could not be embedded (``failed``: their ids)."""
        keep = self.keep - failed
        return [pid for pid in existing if pid not in keep]


def _size(car: StoredCar) -> tuple[int, int]:
    return (car.payload.width or 0, car.payload.height or 0)


def _signal(item: GalleryItem) -> dict[str, Any]:
    """A gallery photo's copy signal as payload fields (none when it cannot be made)."""
    try:
        signal = signal_of(item.record.path)
    except (ImageError, OSError):
        return {}
    return {} if signal is None else signal.payload()


def _gallery_payload(
    item: GalleryItem, fields: dict[str, Any], version: str, size: tuple[int, int]
) -> CarPayload:
    return gallery_payload(fields | _signal(item), item.sha256, size, version)


def _copied_gallery(
    item: GalleryItem, fields: dict[str, Any], version: str, car: StoredCar
) -> CarPayload:
    kept = CopySignal.stored(car.payload)
    signal = kept.payload() if kept is not None else _signal(item)
    return gallery_payload(fields | signal, item.sha256, _size(car), version)


def _copied_upload(upload: AddedPhoto, version: str, car: StoredCar) -> CarPayload:
    return reindexed(upload.payload, _size(car), version)


LEDGER_FIELDS = (*EDITABLE, CAR_ID, "view", "source", "path", "sha256")
"""What the ledger says of a photo added through the API (its size and vector are the
collection's)."""


def _ledger_fields(upload: AddedPhoto) -> dict[str, Any]:
    stored = upload.payload.to_payload()
    return {name: stored.get(name) for name in LEDGER_FIELDS}


def _as_it_is(car: StoredCar) -> CarPayload:
    return car.payload


def plan_sync(
    desired: Desired,
    existing: Mapping[str, Mapping[str, Any]],
    version: str,
    reusable: Mapping[str, str | None] | None = None,
) -> SyncPlan:
    """The plan for a collection holding ``existing`` (id -> payload) to hold ``desired``, with
    vectors of ``version``; ``reusable`` (id -> source) lists the points of a collection of the
    same embedding version whose vectors are copied instead of embedded again.

    AddedPhoto points the ledger has no record of are kept (never dropped silently) unless deleted
    through the API; gallery points whose photo is gone are deleted."""
    plan = SyncPlan(keep={i.id for i in desired.items} | set(desired.uploads))
    plan.keep |= {
        pid
        for pid, p in existing.items()
        if p.get("source") == "upload" and pid not in desired.tombstones
    }
    reuse = reusable or {}
    for item in desired.items:
        fields = desired.fields(item)
        if item.id in existing:
            if changes := changed_fields(existing[item.id], fields):
                plan.update[item.id] = changes
        elif reuse.get(item.id) == "gallery":
            plan.copy[item.id] = partial(_copied_gallery, item, fields, version)
        else:
            plan.embed.append(
                Todo(
                    item.id,
                    item.record.path,
                    item.record.relative,
                    partial(_gallery_payload, item, fields, version),
                )
            )
    for upload in desired.uploads.values():
        if upload.id in existing:
            if changes := changed_fields(existing[upload.id], _ledger_fields(upload)):
                plan.update[upload.id] = changes
            continue
        if upload.id in reuse:
            plan.copy[upload.id] = partial(_copied_upload, upload, version)
        else:
            plan.embed.append(upload_todo(upload, version))
    for pid, source in reuse.items():
        if source == "upload" and pid not in existing and pid not in desired.tombstones:
            plan.copy.setdefault(pid, _as_it_is)  # an upload the ledger lacks
            plan.keep.add(pid)
    plan.unchanged = len(desired.items) - sum(1 for t in plan.embed if not t.upload)
    return plan


def still_current(
    desired: Desired,
    stored: Mapping[str, str | None],
    recorded_unusable: set[str],
) -> bool:
    """Whether a collection whose points have these sources (id -> source), built from the
    same gallery description with these photos (sha256) recorded as unusable, holds exactly
    what it should."""
    gallery = {pid for pid, source in stored.items() if source == "gallery"}
    if gallery != {i.id for i in desired.items if i.sha256 not in recorded_unusable}:
        return False
    return set(desired.uploads) <= set(stored) and not desired.tombstones & set(stored)
