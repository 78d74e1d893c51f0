"""Cars as another service's listings, on both engines: external ids and attributes, declared
filters, facets, the browse cursor, edits that outlive builds, and refined searches."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.cursor import CursorError
from indexer.fields import FieldError
from indexer.index import CarIndex
from indexer.listing import ExternalIdTaken, UnknownCars
from indexer.payload import CarFields, CarFilter, Listing
from tests.indexer.conftest import jpeg, open_index

ATTRIBUTES = "price:float,mileage:integer,color:keyword,available:bool"
MAKES = ("Audi", "BMW", "Tesla")
COLOURS = ("red", "black", "white")


@pytest.fixture(params=["edge", "server"])
def listed(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CarIndex]:
    monkeypatch.setenv("CARSEARCH_ATTRIBUTES", ATTRIBUTES)
    index = open_index(request.param, tmp_path)
    yield index
    index.close()


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _add(
    index: CarIndex,
    embedder: Embedder,
    seed: int,
    vector: np.ndarray,
    car: CarFields | None = None,
    listing: Listing | None = None,
) -> str:
    data = jpeg(seed)
    version = embedder.version
    return index.add_photo(version, data, "jpeg", (160, 96), vector, car or CarFields(), listing).id


def _fleet(index: CarIndex, embedder: Embedder, n: int = 12) -> dict[str, dict[str, Any]]:
    """``n`` cars with attributes; id -> what they were given."""
    index.ensure_live(embedder)
    rng = np.random.default_rng(0)
    given: dict[str, dict[str, Any]] = {}
    for i in range(n):
        attributes = {
            "price": 1000.0 * i,
            "mileage": 5000 * i,
            "color": COLOURS[i % 3],
            "available": i % 2 == 0,
        }
        car = CarFields(make=MAKES[i % 3], model="M", year=2012)
        listing = Listing(external_id=f"l-{i}", attributes=attributes)
        car_id = _add(index, embedder, 500 + i, _unit(rng, embedder.dim), car, listing)
        given[car_id] = {"make": MAKES[i % 3], **attributes}
    return given


def test_attributes_filter_and_facet_on_both_engines(
    listed: CarIndex, small_embedder: Embedder
) -> None:
    given = _fleet(listed, small_embedder)
    live = listed.serving(small_embedder.version)
    spec = {"price": {"gte": 3000, "lte": 9000}, "color": ["red", "black"], "available": True}
    where = CarFilter(where=listed.fields.parse_filter(spec))
    found = listed.search(live, _unit(np.random.default_rng(1), small_embedder.dim), where, 50)
    expected = {
        car_id
        for car_id, g in given.items()
        if 3000 <= g["price"] <= 9000 and g["color"] in ("red", "black") and g["available"]
    }
    assert {c.car_id for c in found} == expected and expected
    car = found[0].payload
    assert car.external_id is not None and car.attributes == {
        k: v for k, v in given[found[0].car_id].items() if k != "make"
    }

    available = CarFilter(where=listed.fields.parse_filter({"available": True}))
    makes = dict(listed.listings.facet(live, "make", available, 10))
    assert makes == Counter(g["make"] for g in given.values() if g["available"])
    assert dict(listed.listings.facet(live, "available", CarFilter(), 10)) == {True: 6, False: 6}
    mileage = CarFilter(where=listed.fields.parse_filter({"mileage": [0, 5000, 10000]}))
    assert dict(listed.listings.facet(live, "color", mileage, 10)) == {
        "red": 1,
        "black": 1,
        "white": 1,
    }
    assert dict(listed.listings.facet(live, "year", CarFilter(), 10)) == {2012: 12}
    cheap = CarFilter(where=listed.fields.parse_filter({"price": {"lt": 3000}}))
    assert dict(listed.listings.facet(live, "mileage", cheap, 10)) == {0: 1, 5000: 1, 10000: 1}
    for bad in ({"dealer": "x"}, {"price": "cheap"}, {"color": {"gte": 1}}, {"available": 1}):
        with pytest.raises(FieldError):
            listed.fields.parse_filter(bad)
    with pytest.raises(FieldError, match="price"):
        listed.listings.facet(live, "price", CarFilter(), 10)


def test_an_external_id_names_one_car_even_when_adds_race(
    listed: CarIndex, small_embedder: Embedder
) -> None:
    listed.ensure_live(small_embedder)
    rng = np.random.default_rng(2)
    first = _add(
        listed, small_embedder, 1, _unit(rng, small_embedder.dim), None, Listing(external_id="x")
    )
    second = _add(  # the same external id: another photo of the same car
        listed, small_embedder, 2, _unit(rng, small_embedder.dim), None, Listing(external_id="x")
    )
    live = listed.serving(small_embedder.version)
    assert first == second and listed.listings.with_external_id("x") == [first]
    found = listed.listings.by_external_id(live, "x")
    assert found is not None and found.id == first and len(found.photos) == 2

    barrier = threading.Barrier(6)
    vectors = [_unit(rng, small_embedder.dim) for _ in range(6)]

    def add(i: int) -> None:
        barrier.wait(timeout=30)
        _add(listed, small_embedder, 10 + i, vectors[i], None, Listing(external_id="race"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    (car,) = listed.listings.with_external_id("race")
    kept = [u for u in listed.ledger.uploads() if u.payload.external_id == "race"]
    assert len(kept) == 6 and {u.car_id for u in kept} == {car}
    whole = listed.listings.car(listed.serving(small_embedder.version), car)
    assert whole is not None and {p.id for p in whole.photos} == {u.id for u in kept}


def test_a_cursor_walk_sees_every_lasting_car_once_while_cars_come_and_go(
    listed: CarIndex, small_embedder: Embedder
) -> None:
    given = _fleet(listed, small_embedder, 25)
    live = listed.serving(small_embedder.version)
    rng = np.random.default_rng(3)
    doomed = sorted(given)[::5]
    seen: list[str] = []
    cursor: str | None = None
    page = 0
    while True:
        cars, cursor = listed.listings.page(live, CarFilter(), 4, cursor)
        seen += [c.id for c in cars]
        if cursor is None:
            break
        if page < len(doomed):  # the gallery changes between pages
            listed.delete(doomed[page])
            _add(listed, small_embedder, 900 + page, _unit(rng, small_embedder.dim))
        page += 1
    assert len(seen) == len(set(seen))
    assert set(given) - set(doomed) <= set(seen)

    where = CarFilter(where=listed.fields.parse_filter({"available": True}))
    walked: list[str] = []
    cursor = None
    while True:
        cars, cursor = listed.listings.page(live, where, 3, cursor)
        walked += [c.id for c in cars]
        if cursor is None:
            break
        good = cursor
    assert sorted(walked) == sorted(
        i for i, g in given.items() if g["available"] and i not in doomed
    )
    body, _, signature = good.partition(".")
    forgeries = (body + "." + signature[::-1], "garbage", body[:-2] + "AA." + signature)
    for forged in (*forgeries, body + ".é" + signature[1:], "ü.ü"):
        with pytest.raises(CursorError):
            listed.listings.page(live, where, 3, forged)
    with pytest.raises(CursorError, match="another filter"):
        listed.listings.page(live, CarFilter(), 3, good)


def test_edits_are_kept_across_builds_and_a_model_change(
    listed: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    listed.build(small_embedder, gallery, progress=False)
    live = listed.serving(small_embedder.version)
    bmw = next(
        pid
        for pid, p in listed.engine.scroll(live, ["path"])
        if p["path"] == "BMW_M3_Coupe_2012/0.jpg"
    )
    rng = np.random.default_rng(4)
    listing = Listing(external_id="u-1", attributes={"price": 9900.0, "color": "red"})
    upload = _add(listed, small_embedder, 77, _unit(rng, small_embedder.dim), None, listing)

    edited = listed.listings.edit(
        bmw, {"year": 2011, "external_id": "g-1", "attributes": {"color": "blue"}}
    )
    assert edited is not None and edited.payload.class_name == "BMW M3 Coupe 2011"
    assert listed.listings.edit(upload, {"attributes": {"price": None}, "make": "Lada"})
    with pytest.raises(ExternalIdTaken):
        listed.listings.edit(upload, {"external_id": "g-1"})
    assert listed.listings.edit("00000000-0000-5000-8000-000000000000", {"year": 1}) is None

    def check(collection: str) -> None:
        car = listed.listings.car(collection, bmw)
        assert car is not None
        assert (car.payload.year, car.payload.class_name, car.payload.external_id) == (
            2011,
            "BMW M3 Coupe 2011",
            "g-1",
        )
        assert car.payload.attributes == {"color": "blue"}
        mine = listed.listings.car(collection, upload)
        assert mine is not None and mine.payload.make == "Lada"
        assert mine.payload.attributes == {"color": "red"}

    check(live)
    listed.update(small_embedder, gallery, progress=False)
    check(live)
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    rebuilt = listed.build(other, gallery, progress=False)
    assert rebuilt.collection != live
    check(rebuilt.collection)
    assert listed.delete(bmw) is not None and bmw not in listed.ledger.edits()


def test_refined_searches_move_toward_positives_and_away_from_negatives(
    listed: CarIndex, small_embedder: Embedder
) -> None:
    listed.ensure_live(small_embedder)
    dim = small_embedder.dim
    rng = np.random.default_rng(5)
    centres = [_unit(rng, dim) for _ in range(2)]
    clusters: list[list[str]] = [[], []]
    for c, centre in enumerate(centres):
        for i in range(6):
            v = centre + 0.15 * _unit(rng, dim)
            clusters[c].append(
                _add(listed, small_embedder, 300 + 10 * c + i, v / np.linalg.norm(v))
            )
    live = listed.serving(small_embedder.version)
    between = (centres[0] + centres[1]) / np.linalg.norm(centres[0] + centres[1])
    positive, negative = clusters[1][0], clusters[0][0]
    query = listed.listings.refinement(live, [between], [positive], [negative])
    where = CarFilter(exclude_ids=frozenset({positive, negative}))
    ranked = [c.id for c in listed.search(live, query, where, 10)]
    assert set(ranked[:5]) == set(clusters[1][1:])
    assert set(ranked[5:]) == set(clusters[0][1:])
    with pytest.raises(UnknownCars, match="00000000-0000-5000-8000-000000000000"):
        listed.listings.refinement(live, [between], ["00000000-0000-5000-8000-000000000000"], [])


def test_manifest_columns_become_the_external_id_and_attributes(
    listed: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    rows = ["path,class_name,external_id,price,Colour,dealer name!"]
    rows += ["BMW_M3_Coupe_2012/0.jpg,BMW M3 Coupe 2012,m-1,12500,Red,Bob"]
    rows += ["Audi_TTS_Coupe_2012/0.jpg,Audi TTS Coupe 2012,m-2,not a price,Blue,"]
    (gallery / "manifest.csv").write_text("\n".join(rows) + "\n")
    report = listed.build(small_embedder, gallery, progress=False)
    live = report.collection
    bmw = listed.listings.by_external_id(live, "m-1")
    audi = listed.listings.by_external_id(live, "m-2")
    assert bmw is not None and audi is not None
    assert bmw.payload.attributes == {"price": 12500.0, "colour": "Red", "dealer_name_": "Bob"}
    assert audi.payload.attributes == {"price": "not a price", "colour": "Blue"}
    cheap = CarFilter(where=listed.fields.parse_filter({"price": {"lte": 20000}}))
    assert [c.id for c in listed.listings.page(live, cheap, 10, None)[0]] == [bmw.id]
