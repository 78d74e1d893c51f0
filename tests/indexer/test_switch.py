"""A build's switch of the alias and the API's writes exclude each other
(``ServedCollections.switching``): an add made with the vectors of a collection the switch
drops is in the collection the build puts live, an add of vectors that no collection able to go
live holds is refused with nothing kept, a caught-up collection of other vectors gets an add at
the next round, and a write within a request does not wait out a switch. Oracle: the car ids
the adds were acknowledged with."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from carembed.embedder import Embedder
from indexer.engines.base import CollectionMissing, StoreError, single_attempt
from indexer.index import CarIndex
from indexer.payload import CarFields
from indexer.served import IndexNotReady
from indexer.versions import embedding_version_of
from tests.conftest import scene
from tests.indexer.conftest import jpeg, make_gallery, open_index


def _built_with_a_then_b(builder: CarIndex, tmp_path: Path, a: Embedder, b: Embedder) -> Path:
    """A gallery built with ``a``, then with ``b``: ``b``'s collection live, ``a``'s
    previous."""
    gallery = make_gallery(tmp_path / "gallery", per_class=1)
    builder.build(a, gallery, progress=False)
    builder.build(b, gallery, progress=False)
    return gallery


def _add(index: CarIndex, embedder: Embedder, seed: int) -> str:
    data = jpeg(seed)
    vector = embedder.embed([data])[0]
    car = index.add_photo(embedder.version, data, "jpeg", (160, 96), vector, CarFields(make="Lada"))
    return car.id


@pytest.mark.slow
def test_an_add_of_vectors_the_switch_drops_is_in_the_collection_it_puts_live(
    handles: tuple[CarIndex, CarIndex],
    tmp_path: Path,
    small_embedder: Embedder,
    flipped_embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, builder = handles
    a, b = small_embedder, flipped_embedder
    gallery = _built_with_a_then_b(builder, tmp_path, a, b)
    service.served.join_all(b)  # the service serves b's collection, live
    builder.rollback()  # a's live again; the service has not followed yet: it adds with b

    added: list[str] = []
    optimize = builder.engine.optimize

    def add_meanwhile(name: str) -> None:
        optimize(name)
        if name in builder.served.joined and not added:  # caught up, before the switch
            added.append(_add(service, b, 7001))

    monkeypatch.setattr(builder.engine, "optimize", add_meanwhile)
    scene(7000).save(gallery / "Audi_TTS_Coupe_2012" / "new.jpg")
    builder.build(a, gallery, progress=False)  # drops b's collection

    state = service.state()
    assert embedding_version_of(state.live) == embedding_version_of(state.previous) == a.version
    assert added and service.listings.car(state.live, added[0]) is not None
    assert service.listings.edit(added[0], {"year": 2001}) is not None

    data = jpeg(7002)
    with pytest.raises(IndexNotReady):  # b's vectors can go live nowhere now
        _add(service, b, 7002)
    sha = hashlib.sha256(data).hexdigest()
    assert all(u.payload.sha256 != sha for u in service.ledger.uploads())


@pytest.mark.slow
def test_an_add_of_other_vectors_reaches_a_caught_up_collection_at_the_next_round(
    handles: tuple[CarIndex, CarIndex],
    tmp_path: Path,
    small_embedder: Embedder,
    flipped_embedder: Embedder,
) -> None:
    service, builder = handles
    a, b = small_embedder, flipped_embedder
    _built_with_a_then_b(builder, tmp_path, a, b)
    state = service.state()
    service.served.join_all(a)  # the service runs a: the previous collection, caught up
    car = _add(service, b, 7004)  # made with b (a request that began before a switch)
    assert service.listings.car(state.previous, car) is None
    service.served.join_all(a)
    assert service.listings.car(state.previous, car) is not None


@pytest.mark.parametrize("kind", ["edge", "server"])
def test_a_write_within_a_request_does_not_wait_out_a_switch(
    kind: str, tmp_path: Path, small_embedder: Embedder
) -> None:
    index = open_index(kind, tmp_path)
    try:
        index.ensure_live(small_embedder)
        car = _add(index, small_embedder, 7003)
        with index.served.switching(), pytest.raises(StoreError, match="held by another"):
            single_attempt(index.listings.edit, car, {"year": 2001})
        assert index.listings.edit(car, {"year": 2001}) is not None
    finally:
        index.close()


def test_a_collection_being_dropped_is_missing_to_the_other_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = open_index("edge", tmp_path)
    name = "cars-test__v__20260101T000000000000"
    index.engine.create(name, 8)
    seen: list[BaseException] = []
    replace = os.replace

    def replace_seen(source: str, target: str) -> None:  # the folder is moved away now
        try:
            index.engine.count(name)
        except (CollectionMissing, StoreError) as exc:
            seen.append(exc)
        replace(source, target)

    monkeypatch.setattr(os, "replace", replace_seen)
    try:
        index.engine.drop(name)
    finally:
        index.close()
    assert [type(e) for e in seen] == [CollectionMissing]
    assert name not in index.engine.collections()
