"""Cars of several photos over the HTTP API: added with their views, found once per search
(at their best photo), browsed and counted once, photos added and deleted, searched with
several photos of one car, batches mapping photos to cars, and the bad inputs refused whole."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import scene, wait_until
from tests.indexer.conftest import make_gallery

KEY = "cars-key"
WRITE = {"X-API-Key": KEY}
MISSING = "00000000-0000-5000-8000-000000000000"
MOST = 4


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _files(seeds: list[int], field: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"{s}.jpg", _jpeg(s), "image/jpeg")) for s in seeds]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("cars")
    settings = AppSettings(
        gallery=make_gallery(root / "gallery"),
        qdrant_path=root / "qdrant",
        data_dir=root / "data",
        api_key=KEY,
        max_photos_per_car=MOST,
        max_wait_ms=5,
    )
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json().get("indexing", {}).get("state") == "done",
            120,
            "the gallery indexed",
        )
        yield client


def _add(client: TestClient, seeds: list[int], **form: Any) -> dict[str, Any]:
    r = client.post("/api/v1/cars", files=_files(seeds), data=form, headers=WRITE)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _cars(client: TestClient) -> list[dict[str, Any]]:
    cars: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/cars", params=params).json()
        cars += page["cars"]
        if (cursor := page["next_cursor"]) is None:
            return cars


def _problem(r: Any, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"], r.json()


def test_a_car_of_three_photos_is_one_car_in_every_answer(client: TestClient) -> None:
    car = _add(client, [501, 502, 503], make="Zed", views=["front", "rear", "interior"])
    assert car["photos_count"] == 3 and len(car["photos"]) == 3
    assert sorted(p["view"] for p in car["photos"]) == ["front", "interior", "rear"]
    for photo in car["photos"]:
        assert client.get(photo["thumb_url"]).status_code == 200
        assert client.get(photo["image_url"]).content[:2] == b"\xff\xd8"
    assert client.get(f"/api/v1/cars/{car['id']}/image").status_code == 200
    assert client.get(f"/api/v1/cars/{car['id']}").json()["photos"] == car["photos"]

    # A search with one of its photos finds the car once, at that photo.
    found = client.post("/api/v1/search", files=_files([502], "image"), data={"limit": 20})
    hits = found.json()["hits"]
    assert len({h["id"] for h in hits}) == len(hits)
    top = hits[0]
    sent = next(p for p in car["photos"] if p["view"] == "rear")
    assert (top["id"], top["photo_id"], top["photos_count"]) == (car["id"], sent["id"], 3)
    assert top["score"] == pytest.approx(1.0, abs=1e-3)
    # Two photos of it: still the car first, once.
    both = client.post("/api/v1/search", files=_files([501, 503]), data={"limit": 20}).json()
    assert both["hits"][0]["id"] == car["id"]
    assert [h["id"] for h in both["hits"]].count(car["id"]) == 1
    similar = client.get(f"/api/v1/cars/{car['id']}/similar", params={"limit": 20}).json()
    assert car["id"] not in {h["id"] for h in similar["hits"]}

    # Paging over cars: no car twice, none skipped.
    everything = [
        h["id"]
        for offset in range(0, 12, 4)
        for h in client.post(
            "/api/v1/search", files=_files([502], "image"), data={"limit": 4, "offset": offset}
        ).json()["hits"]
    ]
    assert len(everything) == len(set(everything)) == len(_cars(client))

    # Browsing and facets count the car once.
    listed = [c for c in _cars(client) if c["id"] == car["id"]]
    assert len(listed) == 1 and listed[0]["photos_count"] == 3
    facet = client.get("/api/v1/facets", params={"field": "make"}).json()["values"]
    assert {"value": "Zed", "count": 1} in facet

    # An edit once for every photo; photos added and deleted.
    r = client.patch(f"/api/v1/cars/{car['id']}", json={"year": 2003}, headers=WRITE)
    assert r.status_code == 200 and r.json()["photos_count"] == 3
    more = client.post(
        f"/api/v1/cars/{car['id']}/photos",
        files=_files([504]),
        data={"views": ["side"]},
        headers=WRITE,
    )
    assert more.status_code == 201, more.text
    assert more.json()["photos_count"] == 4 and more.json()["year"] == 2003
    gone = more.json()["photos"][-1]["id"]
    r = client.delete(f"/api/v1/cars/{car['id']}/photos/{gone}", headers=WRITE)
    assert r.status_code == 204
    after = client.get(f"/api/v1/cars/{car['id']}").json()
    assert after["photos_count"] == 3 and gone not in {p["id"] for p in after["photos"]}
    assert client.get(f"/api/v1/cars/{car['id']}/photos/{gone}/image").status_code == 404


def test_bad_inputs_are_refused_and_nothing_is_half_written(client: TestClient) -> None:
    car = _add(client, [601, 602])
    other = _add(client, [603])
    before = len(_cars(client))
    too_many = client.post(
        "/api/v1/cars", files=_files(list(range(610, 610 + MOST + 1))), headers=WRITE
    )
    _problem(too_many, 422, f"1-{MOST} photos")
    grown = client.post(
        f"/api/v1/cars/{car['id']}/photos", files=_files([611, 612, 613]), headers=WRITE
    )
    _problem(grown, 422, f"at most {MOST} photos")
    assert client.get(f"/api/v1/cars/{car['id']}").json()["photos_count"] == 2
    long_view = client.post(
        "/api/v1/cars", files=_files([614]), data={"views": ["x" * 33]}, headers=WRITE
    )
    _problem(long_view, 422, "at most 32 characters")
    miscounted = client.post(
        "/api/v1/cars", files=_files([615, 616]), data={"views": ["front"]}, headers=WRITE
    )
    _problem(miscounted, 422, "one view per photo")
    _problem(client.post("/api/v1/cars", data={"make": "A"}, headers=WRITE), 422, "photos")
    query = client.post("/api/v1/search", files=_files(list(range(620, 629))))
    _problem(query, 422, "1-8 photos")
    foreign = other["photos"][0]["id"]
    _problem(
        client.delete(f"/api/v1/cars/{car['id']}/photos/{foreign}", headers=WRITE), 404, foreign
    )
    _problem(client.delete(f"/api/v1/cars/{MISSING}/photos/{foreign}", headers=WRITE), 404, MISSING)
    _problem(
        client.post(f"/api/v1/cars/{MISSING}/photos", files=_files([617]), headers=WRITE),
        404,
        MISSING,
    )
    assert len(_cars(client)) == before
    assert client.get(f"/api/v1/cars/{other['id']}").json()["photos_count"] == 1
    # Deleting the last photo deletes the car.
    r = client.delete(f"/api/v1/cars/{other['id']}/photos/{foreign}", headers=WRITE)
    assert r.status_code == 204
    assert client.get(f"/api/v1/cars/{other['id']}").status_code == 404


def test_a_batch_maps_its_photos_to_cars_in_order(client: TestClient) -> None:
    cars = [
        {"make": "Kia", "external_id": "k-1", "photos": 2, "views": ["front", "rear"]},
        {"make": "Lada"},
    ]
    r = client.post(
        "/api/v1/cars/batch",
        files=_files([701, 702, 703]),
        data={"cars": json.dumps(cars)},
        headers=WRITE,
    )
    assert r.status_code == 200, r.text
    kia, lada = r.json()["results"]
    assert (kia["make"], kia["photos_count"], lada["make"], lada["photos_count"]) == (
        "Kia",
        2,
        "Lada",
        1,
    )
    assert sorted(p["view"] for p in kia["photos"]) == ["front", "rear"]
    assert client.get("/api/v1/cars/external/k-1").json()["id"] == kia["id"]
    wrong = client.post(
        "/api/v1/cars/batch",
        files=_files([704, 705]),
        data={"cars": json.dumps([{"photos": 3}])},
        headers=WRITE,
    )
    _problem(wrong, 422, "2 were sent")


def test_re_used_photos_are_flagged_refused_or_allowed_and_audited(client: TestClient) -> None:
    from PIL import Image

    original = scene(801, size=(480, 320))
    buf = io.BytesIO()
    original.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    r = client.post(
        "/api/v1/cars",
        files={"image": ("o.jpg", data, "image/jpeg")},
        data={"external_id": "orig"},
        headers=WRITE,
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["reused"] == [] and first["reused_reason"] is None

    small = io.BytesIO()
    original.resize((240, 160)).save(small, "JPEG", quality=40)
    copy = client.post(
        "/api/v1/cars",
        files={"image": ("c.jpg", small.getvalue(), "image/jpeg")},
        data={"external_id": "copy"},
        headers=WRITE,
    )
    assert copy.status_code == 201, copy.text
    (found,) = copy.json()["reused"]
    assert (found["car_id"], found["external_id"], found["kind"]) == (first["id"], "orig", "near")
    assert found["photo_id"] == first["photos"][0]["id"]
    assert found["photo"] == copy.json()["photos"][0]["id"]

    before = len(_cars(client))
    refused = client.post(
        "/api/v1/cars",
        files={"image": ("o.jpg", data, "image/jpeg")},
        data={"external_id": "thief", "on_reused": "reject"},
        headers=WRITE,
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "/problems/photo-reused"
    assert first["id"] in refused.json()["detail"] or copy.json()["id"] in refused.json()["detail"]
    assert len(_cars(client)) == before
    assert client.get("/api/v1/cars/external/thief").status_code == 404
    bad = client.post(
        "/api/v1/cars",
        files={"image": ("o.jpg", data, "image/jpeg")},
        data={"on_reused": "sometimes"},
        headers=WRITE,
    )
    assert bad.status_code == 422
    allowed = client.post(
        "/api/v1/cars",
        files={"image": ("o.jpg", data, "image/jpeg")},
        data={"external_id": "allowed", "on_reused": "allow"},
        headers=WRITE,
    ).json()
    assert allowed["reused"] is None and "on_reused=allow" in allowed["reused_reason"]
    plain = io.BytesIO()
    Image.new("RGB", (200, 120), (70, 70, 70)).save(plain, "JPEG")
    flat = client.post(
        "/api/v1/cars", files={"image": ("p.jpg", plain.getvalue(), "image/jpeg")}, headers=WRITE
    ).json()
    assert flat["reused"] is None and "too plain" in flat["reused_reason"]

    mine = client.get(f"/api/v1/cars/{first['id']}/reused").json()
    (photo,) = mine["photos"]
    assert {r["car_id"] for r in photo["reused"]} == {copy.json()["id"], allowed["id"]}
    assert client.get("/api/v1/reused").status_code == 403
    audit = client.get("/api/v1/reused", headers=WRITE).json()["pairs"]
    grouped = {p["car_id"] for p in audit} | {p["other"]["car_id"] for p in audit}
    assert {first["id"], copy.json()["id"], allowed["id"]} <= grouped
