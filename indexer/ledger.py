"""Photos of cars added, edited and deleted through the API, kept outside any collection so
that every build (full or incremental, same model or a new one) carries them into what it writes
(the paths are ``indexer.layout``'s):

    uploads/<photo id>.<ext>  a photo, as uploaded
    uploads/<photo id>.json   its payload (its car's id and fields as given, its view, ...)
    tombstones.json           photo ids deleted through the API
    edits/<car id>.json       a car's edits (a JSON merge patch of its fields)
    uploads/quarantine/       records found without their photo (set aside, logged)
    locks/<xy>.lock           one car's adds, edits and deletes, one at a time
    locks/external-<xy>.lock  the cars of one external id, one writer at a time

(A photo added before cars had several photos is ``<sha256>.<ext>`` beside ``<sha256>.json``:
a record always sits beside its photo, under the photo's name.)

Edits apply to every photo of a car, gallery photos and uploads alike, in every build, until the
car is deleted or added again without its external id. A photo deleted through the API stays
deleted: its tombstone keeps builds from indexing it again (a gallery file included) until the
same photo is added to the same car through the API again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carembed.atomic import write_atomically
from indexer import merge_patch
from indexer.files import locked
from indexer.layout import DataLayout
from indexer.payload import CarPayload, edited, photo_id, point_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddedPhoto:
    """A photo added through the API: its point id, its file, its payload (with its car id)."""

    id: str
    photo: Path
    payload: CarPayload

    @property
    def car_id(self) -> str:
        return self.payload.car_id or self.id

    @property
    def record(self) -> Path:
        return record_of(self.photo)


def record_of(photo: Path) -> Path:
    """The record beside a photo."""
    return photo.with_suffix(".json")


def _read(record: Path) -> AddedPhoto:
    """The upload a record describes (a record without a car id is a car of its own photo);
    FileNotFoundError, or ValueError when unreadable."""
    payload = CarPayload.model_validate_json(record.read_bytes())
    sha = payload.sha256 or ""
    car_id = payload.car_id or point_id(sha)
    payload = payload.model_copy(update={"car_id": car_id})
    return AddedPhoto(photo_id(car_id, sha), record.parent / (payload.path or ""), payload)


class Ledger:
    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout
        self.uploads_dir = layout.uploads
        self._tombstones = layout.tombstones
        self.edits_dir = layout.edits

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.layout.ledger_lock)

    def writing(self, car_id: str) -> contextlib.AbstractContextManager[None]:
        """Held while one car is added or deleted (its files, its tombstone and its points),
        across threads and processes: any interleaving of adds and deletes of the same photo
        then ends with the car whole or deleted whole. Ids share 256 lock files."""
        return locked(self.layout.locks / f"{car_id[:2]}.lock")

    def claiming(self, external_id: str | None) -> contextlib.AbstractContextManager[None]:
        """Held while a car takes ``external_id`` (taken before ``writing``): two adds of the
        same external id, in any threads or processes, run one after the other."""
        if external_id is None:
            return contextlib.nullcontext()
        digest = hashlib.sha256(external_id.encode()).hexdigest()
        return locked(self.layout.locks / f"external-{digest[:2]}.lock")

    def add(self, data: bytes, suffix: str, payload: CarPayload) -> AddedPhoto:
        """Keep a photo of the car ``payload.car_id`` (``suffix``: its format's file suffix)
        and its payload, both written atomically (call within ``writing(car_id)``), and lift a
        tombstone of the same photo of the same car."""
        if payload.sha256 is None or payload.car_id is None:
            raise ValueError("an upload's payload names its sha256 and car")
        pid = photo_id(payload.car_id, payload.sha256)
        payload = payload.model_copy(update={"path": f"{pid}.{suffix}"})
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        upload = AddedPhoto(pid, self.uploads_dir / f"{pid}.{suffix}", payload)
        write_atomically(upload.photo, data)
        write_atomically(upload.record, payload.model_dump_json().encode())
        with self._locked():
            dead = self._read_tombstones()
            if pid in dead:
                self._write_tombstones(dead - {pid})
        return upload

    def set_edit(self, car_id: str, edit: dict[str, Any] | None) -> None:
        """Make ``edit`` the car's whole edit (None: none), as when its fields are given anew."""
        if edit is None:
            self._edit_file(car_id).unlink(missing_ok=True)
            return
        self.edits_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self._edit_file(car_id), json.dumps(edit, sort_keys=True).encode())

    # -- edits -----------------------------------------------------------------------------
    def _edit_file(self, car_id: str) -> Path:
        return self.edits_dir / f"{car_id}.json"

    def edit(self, car_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Record ``patch`` (a merge patch of car fields, external id and attributes) on top
        of the car's earlier edits (call within ``writing(car_id)``); returns the whole edit."""
        merged = merge_patch.compose(self.edit_of(car_id) or {}, patch)
        self.set_edit(car_id, merged)
        return merged

    def edit_of(self, car_id: str) -> dict[str, Any] | None:
        """This car's edit (None: none, or unreadable, logged); reads one file."""
        path = self._edit_file(car_id)
        try:
            return dict(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            logger.warning("edit record %s is unreadable (%s): not applied", path, exc)
            return None

    def edited_ids(self) -> set[str]:
        """The ids of the cars that have an edit."""
        if not self.edits_dir.is_dir():
            return set()
        return {p.stem for p in self.edits_dir.glob("*.json")}

    def edits(self) -> dict[str, dict[str, Any]]:
        """Every car's edit by car id (an unreadable one is logged and left out)."""
        edits = {car_id: self.edit_of(car_id) for car_id in sorted(self.edited_ids())}
        return {car_id: edit for car_id, edit in edits.items() if edit is not None}

    def uploads(self) -> list[AddedPhoto]:
        """Every upload whose photo and payload are both there, with its edits applied. An
        unreadable record is logged and left on disk; a record whose photo is gone is moved to
        ``uploads/quarantine/`` (and logged once)."""
        found = []
        for meta in sorted(self.uploads_dir.glob("*.json")) if self.uploads_dir.is_dir() else []:
            try:
                upload = _read(meta)
            except FileNotFoundError:  # the car was deleted meanwhile
                continue
            except ValueError as exc:
                logger.warning("upload record %s is unreadable (%s): not indexed", meta, exc)
                continue
            if upload.payload.sha256 is None or not upload.photo.is_file():
                self._quarantine(meta, upload)
                continue
            found.append(upload)
        edits = self.edits()
        return [_edited(u, edit) if (edit := edits.get(u.car_id)) else u for u in found]

    def current(self, upload: AddedPhoto) -> AddedPhoto | None:
        """``upload`` as the ledger has it now, its car's edit applied (call within
        ``writing(upload.car_id)``): None when it was deleted since."""
        try:
            now = _read(upload.record)
        except (FileNotFoundError, ValueError):
            return None
        if self.is_deleted(upload.id) or not upload.photo.is_file():
            return None
        edit = self.edit_of(now.car_id)
        return _edited(now, edit) if edit else now

    def is_deleted(self, car_id: str) -> bool:
        return car_id in self.tombstones()

    def _quarantine(self, meta: Path, upload: AddedPhoto) -> None:
        with self.writing(upload.car_id):
            if not meta.is_file() or upload.photo.is_file():
                return  # deleted or completed meanwhile
            target = self.layout.quarantine / meta.name
            target.parent.mkdir(exist_ok=True)
            os.replace(meta, target)
        logger.warning("upload record %s has no photo: not indexed, moved to %s", meta, target)

    def _read_tombstones(self) -> set[str]:
        if not self._tombstones.is_file():
            return set()
        return set(json.loads(self._tombstones.read_bytes())["deleted"])

    def _write_tombstones(self, ids: set[str]) -> None:
        body = json.dumps({"deleted": sorted(ids)}, indent=0).encode()
        write_atomically(self._tombstones, body)

    def tombstones(self) -> set[str]:
        with self._locked():
            return self._read_tombstones()

    def delete(self, photos: dict[str, CarPayload]) -> None:
        """Remember that these photos (photo id -> payload) were deleted (call within their
        car's ``writing``); an uploaded photo and its record go too."""
        with self._locked():
            self._write_tombstones(self._read_tombstones() | set(photos))
        for payload in photos.values():
            if payload.source == "upload" and payload.path:
                photo = self.uploads_dir / payload.path
                for path in (record_of(photo), photo):
                    if path.is_file() and path.parent == self.uploads_dir:
                        path.unlink()


def _edited(upload: AddedPhoto, edit: dict[str, Any]) -> AddedPhoto:
    payload = CarPayload.model_validate(edited(upload.payload.to_payload(), edit))
    return AddedPhoto(upload.id, upload.photo, payload)
