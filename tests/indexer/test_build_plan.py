"""The build plan as a pure function: desired and existing in, operations out (no store, no
model)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from carembed.datasets import CarRecord
from indexer.build_plan import Desired, plan_sync, still_current
from indexer.fields import FieldSchema
from indexer.gallery import GalleryItem
from indexer.ledger import AddedPhoto
from indexer.payload import (
    CarFields,
    Listing,
    StoredCar,
    point_id,
    record_fields,
    upload_payload,
)

V = "mobilenetv2-identity-000000000000-f32"


def _item(name: str, class_name: str = "BMW M3 Coupe 2012") -> GalleryItem:
    record = CarRecord(Path(f"/g/{name}.jpg"), f"{name}.jpg", class_name)
    return GalleryItem(record, hashlib.sha256(name.encode()).hexdigest())


def _upload(name: str) -> AddedPhoto:
    sha = hashlib.sha256(name.encode()).hexdigest()
    car = CarFields(make="Audi", model="TT", year=2011)
    payload = upload_payload(point_id(sha), car, Listing(), sha, (10, 10), V)
    return AddedPhoto(
        point_id(sha), Path(f"/u/{sha}.jpg"), payload.model_copy(update={"path": "u"})
    )


def _stored(item: GalleryItem, schema: FieldSchema) -> dict[str, Any]:
    return record_fields(item.record, schema) | {"source": "gallery", "car_id": item.car_id}


def test_the_plan_embeds_copies_updates_and_deletes_what_differs() -> None:
    schema = FieldSchema({})
    kept, moved, new, reused, gone, deleted = (_item(n) for n in "abcdef")
    fresh, lost = _upload("u1"), _upload("u2")
    desired = Desired(
        items=[kept, moved, new, reused],
        uploads={fresh.id: fresh},
        tombstones={deleted.id, lost.id},
        edits={},
        schema=schema,
    )
    existing = {
        kept.id: _stored(kept, schema),
        moved.id: _stored(moved, schema) | {"class_name": "Audi TT Coupe 2011"},
        gone.id: _stored(gone, schema),  # its photo left the gallery
        deleted.id: _stored(deleted, schema),  # deleted through the API
        "orphan": {"source": "upload"},  # an upload the ledger has no record of: kept
    }
    plan = plan_sync(desired, existing, V, reusable={reused.id: "gallery", "older": "upload"})

    assert [t.id for t in plan.embed] == [new.id, fresh.id]
    assert plan.embed[1].upload and not plan.embed[0].upload
    assert set(plan.copy) == {reused.id, "older"}
    assert plan.update == {moved.id: {"class_name": "BMW M3 Coupe 2012"}}
    assert plan.unchanged == 3  # kept, moved (payload only) and reused: not embedded
    assert plan.keep == {kept.id, moved.id, new.id, reused.id, fresh.id, "orphan", "older"}
    assert plan.deletes(existing, failed=set()) == [gone.id, deleted.id]
    assert plan.deletes(existing, failed={kept.id}) == [kept.id, gone.id, deleted.id]
    # A copied point gets the payload of this version, with its stored size.
    old = upload_payload(reused.id, CarFields(), Listing(), "x", (640, 480), "old")
    source = StoredCar(reused.id, old)
    copied = plan.copy[reused.id](source)
    assert (copied.model_version, copied.width, copied.source) == (V, 640, "gallery")


def test_a_collection_is_current_only_when_it_holds_exactly_what_it_should() -> None:
    schema = FieldSchema({})
    a, b, broken = _item("a"), _item("b"), _item("broken")
    upload = _upload("u")
    desired = Desired([a, b, broken], {upload.id: upload}, set(), {}, schema)
    stored: dict[str, str | None] = {a.id: "gallery", b.id: "gallery", upload.id: "upload"}
    assert still_current(desired, stored, recorded_unusable={broken.sha256})
    assert not still_current(desired, stored, recorded_unusable=set())  # broken is missing
    assert not still_current(desired, {a.id: "gallery", b.id: "gallery"}, {broken.sha256})
    dead = Desired([a, b, broken], {}, {upload.id}, {}, schema)
    assert not still_current(dead, stored, {broken.sha256})  # holds a deleted car


def test_a_gallery_photo_added_through_the_api_keeps_what_the_api_gave() -> None:
    schema = FieldSchema({})
    photo = _item("same")
    added = _upload("same")  # the same bytes: the same car id
    assert added.id == photo.id
    desired = Desired([], {added.id: added}, set(), {}, schema)  # as Desired.of makes it
    plan = plan_sync(desired, {photo.id: _stored(photo, schema)}, V)
    assert plan.update[photo.id]["make"] == "Audi" and plan.update[photo.id]["source"] == "upload"
    assert not plan.embed and plan.keep == {photo.id}


def test_desired_of_leaves_out_gallery_photos_added_through_the_api(tmp_path: Path) -> None:
    from carembed.datasets import read_dataset
    from indexer.gallery import scan_gallery
    from indexer.layout import DataLayout
    from indexer.ledger import Ledger
    from tests.conftest import scene

    folder = tmp_path / "gallery" / "BMW_M3_Coupe_2012"
    folder.mkdir(parents=True)
    scene(1).save(folder / "0.jpg")
    scene(2).save(folder / "1.jpg")
    assert len(read_dataset(tmp_path / "gallery").records) == 2
    scan = scan_gallery(tmp_path / "gallery")
    data = (folder / "0.jpg").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ledger = Ledger(DataLayout(tmp_path / "data"))
    lada = upload_payload(point_id(sha), CarFields(make="Lada"), Listing(), sha, (1, 1), V)
    ledger.add(data, "jpg", lada)
    desired = Desired.of(scan, ledger, FieldSchema({}))
    assert [i.record.relative for i in desired.items] == ["BMW_M3_Coupe_2012/1.jpg"]
    assert [u.payload.make for u in desired.uploads.values()] == ["Lada"]
