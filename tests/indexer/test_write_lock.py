"""A delete of a car that arrives while an add of the same photo is between its files and its
point waits for the add, so the car ends deleted whole; a record without its photo is set
aside."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from carembed.embedder import Embedder
from indexer.index import CarIndex
from indexer.payload import CarFields, point_id
from tests.indexer.conftest import jpeg, open_index


def _add(index: CarIndex, collection: str, data: bytes, embedder: Embedder) -> None:
    vector = np.zeros(1280, np.float32) + 1 / 1280**0.5
    index.add_photo(embedder.version, data, "jpeg", (160, 96), vector, CarFields(make="Audi"))


def test_a_delete_during_an_add_of_the_same_photo_leaves_no_half_car(
    tmp_path: Path, small_embedder: Embedder
) -> None:
    index = open_index("edge", tmp_path)
    collection = index.ensure_live(small_embedder)
    data = jpeg(7)
    sha = hashlib.sha256(data).hexdigest()
    car_id = point_id(sha)
    _add(index, collection, data, small_embedder)

    in_upsert, release = threading.Event(), threading.Event()
    upsert = index.engine.upsert

    def held_upsert(*args: object) -> None:
        in_upsert.set()
        assert release.wait(30)
        upsert(*args)  # type: ignore[arg-type]

    index.engine.upsert = held_upsert  # type: ignore[method-assign]
    adding = threading.Thread(target=_add, args=(index, collection, data, small_embedder))
    adding.start()
    assert in_upsert.wait(30)
    deleting = threading.Thread(target=index.delete, args=(car_id,))
    deleting.start()
    deleting.join(timeout=2)  # unserialised, the delete would be done by now
    release.set()
    adding.join(timeout=30)
    deleting.join(timeout=30)
    assert not adding.is_alive() and not deleting.is_alive()

    assert index.get(collection, car_id) is None
    assert car_id in index.ledger.tombstones()
    assert list(index.ledger.uploads_dir.glob(f"{sha}.*")) == []
    index.close()


def test_a_record_without_its_photo_is_set_aside(tmp_path: Path, small_embedder: Embedder) -> None:
    index = open_index("edge", tmp_path)
    collection = index.ensure_live(small_embedder)
    kept, lost = jpeg(1), jpeg(2)
    for data in (kept, lost):
        _add(index, collection, data, small_embedder)
    lost_id = point_id(hashlib.sha256(lost).hexdigest())
    (index.ledger.uploads_dir / f"{lost_id}.jpeg").unlink()

    found = index.ledger.uploads()
    assert [u.payload.sha256 for u in found] == [hashlib.sha256(kept).hexdigest()]
    assert not (index.ledger.uploads_dir / f"{lost_id}.json").exists()
    assert (index.ledger.uploads_dir / "quarantine" / f"{lost_id}.json").is_file()
    index.close()
