"""Cars of several photos on both engines: one hit, one browse entry and one facet count per
car, edits once per car, photos added and deleted, kept whole across a rebuild with another
model, and the bounds that refuse a write whole."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.cars import NewPhoto, NoSuchCar, NoSuchPhoto, TooManyPhotos
from indexer.covers import IndexedCar
from indexer.index import CarIndex
from indexer.payload import CarFields, CarFilter, Listing
from tests.conftest import scene
from tests.indexer.conftest import jpeg


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _photos(seeds: list[int], vectors: list[np.ndarray]) -> list[NewPhoto]:
    return [
        NewPhoto(jpeg(s), "jpeg", (160, 96), v, view=f"view-{s}")
        for s, v in zip(seeds, vectors, strict=True)
    ]


def _covers(index: CarIndex, collection: str) -> dict[str, list[str]]:
    """Car id -> its photos flagged as cover."""
    found: dict[str, list[str]] = {}
    for pid, payload in index.engine.scroll(collection, ["car_id", "cover"]):
        found.setdefault(payload["car_id"], [])
        if payload.get("cover"):
            found[payload["car_id"]].append(pid)
    return found


def _one_cover_each(index: CarIndex, collection: str) -> None:
    covers = _covers(index, collection)
    assert all(len(c) == 1 for c in covers.values()), covers


def test_a_car_of_several_photos_is_one_car_everywhere_and_stays_whole_across_a_rebuild(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    live = index.ensure_live(small_embedder)
    version, dim = small_embedder.version, small_embedder.dim
    rng = np.random.default_rng(0)
    centre = _unit(rng.normal(size=dim))
    near = [_unit(centre + 0.3 * _unit(rng.normal(size=dim))) for _ in range(5)]
    far = _unit(rng.normal(size=dim))
    audi = index.cars.add(
        version,
        _photos([1, 2, 3], near[:3]),
        CarFields(make="Audi", model="TT", year=2011),
        Listing(external_id="ad-1", attributes={"price": 9900}),
    ).car
    bmw = index.cars.add(version, _photos([4, 5], near[3:]), CarFields(make="Audi"), Listing()).car
    kia = index.cars.add(version, _photos([6], [far]), CarFields(make="BMW"), Listing()).car
    assert [len(c.photos) for c in (audi, bmw, kia)] == [3, 2, 1]
    assert {p.payload.view for p in audi.photos} == {"view-1", "view-2", "view-3"}

    # One hit per car, at its best photo's cosine; pages never repeat a car.
    found = index.search_cars(live, centre, CarFilter(), 10)
    hits = [g[0] for g in found.groups]
    photos = {audi.id: near[:3], bmw.id: near[3:], kia.id: [far]}
    best = {car: max(float(v @ centre) for v in vectors) for car, vectors in photos.items()}
    assert [h.car_id for h in hits] == sorted(best, key=lambda c: -best[c])
    for hit in hits:
        assert hit.score == pytest.approx(best[hit.car_id], abs=1e-4)
    paged = [
        g[0].car_id
        for offset in range(3)
        for g in index.search_cars(live, centre, CarFilter(), 1, offset).groups
    ]
    assert paged == [h.car_id for h in hits]

    # Facets and browsing count cars, not photos; a car lists all its photos.
    assert dict(index.listings.facet(live, "make", CarFilter(), 10)) == {"Audi": 2, "BMW": 1}
    listed: list[IndexedCar] = []
    cursor: str | None = None
    while True:
        page, cursor = index.listings.page(live, CarFilter(), 2, cursor)
        listed += page
        if cursor is None:
            break
    assert sorted((c.id, len(c.photos)) for c in listed) == sorted(
        [(audi.id, 3), (bmw.id, 2), (kia.id, 1)]
    )
    assert index.listings.photo_counts(live, [audi.id, kia.id]) == {audi.id: 3, kia.id: 1}
    _one_cover_each(index, live)

    # An edit is made once, for every photo of the car.
    edited = index.listings.edit(audi.id, {"year": 2001, "attributes": {"price": 8800}})
    assert edited is not None and len(edited.photos) == 3
    stored = index.engine.retrieve(live, [p.id for p in audi.photos])
    assert {(p.payload.year, p.payload.attributes["price"]) for p in stored} == {(2001, 8800)}

    # Photos added and deleted; a photo of another car is refused with nothing deleted.
    with pytest.raises(NoSuchPhoto):
        index.cars.delete_photo(audi.id, bmw.photos[0].id)
    with pytest.raises(NoSuchCar):
        index.cars.delete_photo("00000000-0000-5000-8000-000000000000", audi.photos[0].id)
    left = index.cars.delete_photo(audi.id, audi.cover.id)
    assert (
        left is not None
        and len(left.photos) == 2
        and audi.cover.id not in {p.id for p in left.photos}
    )
    more = index.cars.add_photos(version, kia.id, _photos([7], [far])).car
    assert len(more.photos) == 2 and {p.payload.make for p in more.photos} == {"BMW"}
    _one_cover_each(index, live)
    assert dict(index.listings.facet(live, "make", CarFilter(), 10)) == {"Audi": 2, "BMW": 1}

    # Too many photos: refused whole.
    index.cars.max_photos = 3
    with pytest.raises(TooManyPhotos):
        index.cars.add_photos(version, kia.id, _photos([8, 9], near[:2]))
    assert len(index.listings.car(live, kia.id).photos) == 2  # type: ignore[union-attr]
    index.cars.max_photos = 30

    # A rebuild with another model re-embeds every photo, keeps each car whole and edited.
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    rebuilt = index.build(other, gallery, progress=False).collection
    for car, count in ((audi, 2), (bmw, 2), (kia, 2)):
        again = index.listings.car(rebuilt, car.id)
        assert again is not None and len(again.photos) == count
        assert {p.payload.model_version for p in again.photos} == {other.version}
    again = index.listings.car(rebuilt, audi.id)
    assert again is not None and {p.payload.year for p in again.photos} == {2001}
    _one_cover_each(index, rebuilt)
    # The gallery's nine photos are nine cars of their own (three per make).
    assert dict(index.listings.facet(rebuilt, "make", CarFilter(), 10)) == {
        "Audi": 2 + 3,
        "BMW": 1 + 3,
        "Tesla": 3,
    }

    # The last photo deleted: the car is gone.
    (only,) = index.cars.delete_photo(bmw.id, bmw.photos[0].id).photos  # type: ignore[union-attr]
    assert index.cars.delete_photo(bmw.id, only.id) is None
    assert index.listings.car(rebuilt, bmw.id) is None


def test_manifest_rows_that_share_an_external_id_are_one_car(
    index: CarIndex, small_embedder: Embedder, tmp_path: Path
) -> None:
    root = tmp_path / "listings"
    root.mkdir()
    rows = []
    for i, (listing, view) in enumerate([("L1", "front"), ("L1", "rear"), ("L1", ""), ("L2", "")]):
        scene(400 + i).save(root / f"{i}.jpg")
        rows.append(
            {"path": f"{i}.jpg", "class_name": "Audi TT 2011", "external_id": listing, "view": view}
        )
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    live = index.build(small_embedder, root, progress=False).collection
    first = index.listings.by_external_id(live, "L1")
    assert first is not None and len(first.photos) == 3
    assert sorted(p.payload.view or "" for p in first.photos) == ["", "front", "rear"]
    assert dict(index.listings.facet(live, "class_name", CarFilter(), 10)) == {"Audi TT 2011": 2}
    assert not any("view" in p.payload.attributes for p in first.photos)


def test_photos_added_and_deleted_while_the_car_is_edited_lose_nothing(
    index: CarIndex, small_embedder: Embedder
) -> None:
    live = index.ensure_live(small_embedder)
    version, dim = small_embedder.version, small_embedder.dim
    rng = np.random.default_rng(1)
    vectors = [_unit(rng.normal(size=dim)) for _ in range(12)]
    car = index.cars.add(
        version, _photos([900, 901], vectors[:2]), CarFields(make="Kia"), Listing()
    ).car
    errors: list[BaseException] = []

    def adding() -> None:
        for i in range(2, 12):
            index.cars.add_photos(version, car.id, _photos([900 + i], [vectors[i]]))

    def deleting() -> None:
        for _ in range(6):
            now = index.listings.car(live, car.id)
            assert now is not None
            if len(now.photos) > 2:
                index.cars.delete_photo(car.id, now.photos[-1].id)

    def editing() -> None:
        for year in range(2000, 2010):
            index.listings.edit(car.id, {"year": year, "attributes": {"n": year}})

    def run(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # any failure is what this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in (adding, deleting, editing)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    whole = index.listings.car(live, car.id)
    assert whole is not None
    kept = {u.id for u in index.ledger.uploads() if u.car_id == car.id}
    assert {p.id for p in whole.photos} == kept  # the ledger and the index agree
    assert not kept & index.ledger.tombstones()
    assert {(p.payload.year, p.payload.attributes["n"]) for p in whole.photos} == {(2009, 2009)}
    assert (index.ledger.edit_of(car.id) or {}).get("year") == 2009
    _one_cover_each(index, live)


def test_an_export_labels_every_photo_and_never_splits_a_car(
    index: CarIndex, small_embedder: Embedder, tmp_path: Path
) -> None:
    from indexer.dataset_export import export_dataset

    root = tmp_path / "listings"
    root.mkdir()
    rows = []
    for car in range(8):
        for shot in range(3):
            name = f"{car}-{shot}.jpg"
            scene(1000 + 10 * car + shot).save(root / name)
            rows.append(
                {"path": name, "class_name": f"Make{car % 2} M 2010", "external_id": f"c{car}"}
            )
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    index.build(small_embedder, root, progress=False)
    report = export_dataset(index.served, index.fields, tmp_path / "out", holdout=0.5)
    with report.manifest.open() as fh:
        exported = list(csv.DictReader(fh))
    assert len(exported) == report.photos == 24
    splits: dict[str, set[str]] = {}
    for row in exported:
        splits.setdefault(row["car_id"], set()).add(row["split"])
    assert len(splits) == 8 and all(len(s) == 1 for s in splits.values())  # never split
    assert sum(s == {"holdout"} for s in splits.values()) == 4  # half of each class's cars
