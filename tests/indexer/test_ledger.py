"""The upload ledger on its own: records read while cars are deleted, one car's edit."""

from __future__ import annotations

import hashlib
from pathlib import Path

from indexer.layout import DataLayout
from indexer.ledger import Ledger
from indexer.payload import CarFields, Listing, point_id, upload_payload
from tests.indexer.conftest import jpeg

V = "mobilenetv2-identity-000000000000-f32"


def _ledger_with(tmp_path: Path, seeds: list[int]) -> tuple[Ledger, list[str]]:
    ledger, ids = Ledger(DataLayout(tmp_path / "data")), []
    for seed in seeds:
        data = jpeg(seed)
        sha = hashlib.sha256(data).hexdigest()
        car = point_id(sha)
        payload = upload_payload(car, CarFields(make="Audi"), Listing(), sha, (1, 1), V)
        ids.append(ledger.add(data, "jpeg", payload).id)
    return ledger, ids


def test_a_record_deleted_while_the_uploads_are_listed_is_left_out(tmp_path: Path) -> None:
    ledger, ids = _ledger_with(tmp_path, [1, 2])
    gone = ledger.uploads_dir / ("0" * 64 + ".json")  # listed, then gone before it is read
    gone.symlink_to(ledger.uploads_dir / "nowhere.json")
    assert sorted(u.id for u in ledger.uploads()) == sorted(ids)
    ledger.edits_dir.mkdir(parents=True, exist_ok=True)
    (ledger.edits_dir / "x.json").symlink_to(ledger.edits_dir / "nowhere.json")
    assert ledger.edits() == {}


def test_an_edit_reads_and_merges_only_its_cars_record(tmp_path: Path) -> None:
    ledger, (first, second) = _ledger_with(tmp_path, [3, 4])
    ledger.edit(first, {"year": 2001, "attributes": {"color": "red"}})
    ledger.edit(second, {"year": 1999})
    merged = ledger.edit(first, {"attributes": {"price": 5}})
    assert merged == {"year": 2001, "attributes": {"color": "red", "price": 5}}
    assert ledger.edit_of(second) == {"year": 1999} and ledger.edited_ids() == {first, second}


def test_current_is_none_once_the_car_is_deleted(tmp_path: Path) -> None:
    ledger, (car,) = _ledger_with(tmp_path, [5])
    (upload,) = ledger.uploads()
    ledger.edit(car, {"year": 2020})
    now = ledger.current(upload)
    assert now is not None and now.payload.year == 2020
    ledger.delete({car: upload.payload})
    assert ledger.current(upload) is None and ledger.is_deleted(car)
