"""The listing API over real HTTP handling: external ids and attributes on add, bulk add,
browse with a cursor, edits, facets, filters and refined searches, and their bad inputs."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import scene, wait_until
from tests.indexer.conftest import make_gallery

KEY = "listing-key"
WRITE = {"X-API-Key": KEY}
MISSING = "00000000-0000-5000-8000-000000000000"


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("listing")
    gallery = make_gallery(root / "gallery")
    settings = AppSettings(
        gallery=gallery,
        qdrant_path=root / "qdrant",
        data_dir=root / "data",
        api_key=KEY,
        attributes="price:float,mileage:integer,color:keyword,available:bool",
        max_wait_ms=5,
    )
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json().get("indexing", {}).get("state") == "done",
            120,
            "the gallery indexed",
        )
        yield client, gallery


def _add(client: TestClient, seed: int, **form: Any) -> dict[str, Any]:
    fields = {k: json.dumps(v) if k == "attributes" else str(v) for k, v in form.items()}
    r = client.post(
        "/api/v1/cars",
        files={"image": ("c.jpg", _jpeg(seed), "image/jpeg")},
        data=fields,
        headers=WRITE,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _problem(r: Any, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"], r.json()


def test_add_with_external_id_and_attributes_then_find_edit_and_replace(
    api: tuple[TestClient, Path],
) -> None:
    client, _ = api
    attributes = {"price": 18500.0, "mileage": 64000, "color": "red", "available": True}
    car = _add(client, 7001, make="Audi", external_id="ad-1", attributes=attributes)
    assert car["external_id"] == "ad-1" and car["attributes"] == attributes
    found = client.get("/api/v1/cars/external/ad-1").json()
    assert found["id"] == car["id"] and found["attributes"] == attributes
    assert client.get("/api/v1/cars/external/nope").status_code == 404

    r = client.patch(
        f"/api/v1/cars/{car['id']}",
        json={"year": 2011, "attributes": {"price": 17900.0, "available": None}},
        headers=WRITE,
    )
    assert r.status_code == 200, r.text
    assert r.json()["attributes"] == {"price": 17900.0, "mileage": 64000, "color": "red"}
    assert client.get(f"/api/v1/cars/{car['id']}").json()["year"] == 2011
    _problem(
        client.patch(f"/api/v1/cars/{MISSING}", json={"year": 2011}, headers=WRITE),
        404,
        MISSING,
    )
    _problem(
        client.patch(
            f"/api/v1/cars/{car['id']}", json={"attributes": {"price": "cheap"}}, headers=WRITE
        ),
        422,
        "price",
    )
    assert client.patch(f"/api/v1/cars/{car['id']}", json={"year": 2011}).status_code == 403

    other = _add(client, 7002, external_id="ad-2")
    taken = client.patch(f"/api/v1/cars/{other['id']}", json={"external_id": "ad-1"}, headers=WRITE)
    assert taken.status_code == 409, taken.text

    # The same external id again: the same car, its fields replaced, the photo added to its own.
    again = _add(client, 7003, make="BMW", external_id="ad-1")
    assert again["id"] == car["id"] and again["photos_count"] == 2
    assert (again["make"], again["attributes"]) == ("BMW", {})
    listed = client.get("/api/v1/cars/external/ad-1").json()
    assert listed["id"] == car["id"] and {p["id"] for p in listed["photos"]} == {
        p["id"] for p in again["photos"]
    }
    assert all(client.get(p["thumb_url"]).status_code == 200 for p in listed["photos"])
    replaced = _add(client, 7004, make="BMW", external_id="ad-1", replace_photos="true")
    assert replaced["id"] == car["id"] and replaced["photos_count"] == 1
    assert client.get(f"/api/v1/cars/{car['id']}").json()["photos_count"] == 1


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"attributes": "{not json"}, "attributes is not valid JSON"),
        ({"attributes": json.dumps({"Bad-Key": 1})}, "Bad-Key"),
        ({"attributes": json.dumps({"price": "cheap"})}, "price"),
        ({"attributes": json.dumps({f"a{i}": i for i in range(51)})}, "at most 50"),
        ({"attributes": json.dumps({"nested": {"x": 1}})}, "nested"),
        ({"external_id": "x" * 201}, "at most 200"),
    ],
)
def test_bad_attributes_and_external_ids_are_refused_and_nothing_is_added(
    api: tuple[TestClient, Path], form: dict[str, str], words: str
) -> None:
    client, _ = api
    before = len(client.get("/api/v1/cars", params={"limit": 1000}).json()["cars"])
    r = client.post(
        "/api/v1/cars",
        files={"image": ("c.jpg", _jpeg(7100), "image/jpeg")},
        data=form,
        headers=WRITE,
    )
    assert r.status_code == 422, r.text
    assert words in r.text
    assert len(client.get("/api/v1/cars", params={"limit": 1000}).json()["cars"]) == before


def test_bulk_add_gives_one_result_per_car_and_a_bad_photo_its_own_problem(
    api: tuple[TestClient, Path],
) -> None:
    client, _ = api
    files = [
        ("images", ("a.jpg", _jpeg(7201), "image/jpeg")),
        ("images", ("b.jpg", b"not an image at all", "image/jpeg")),
        ("images", ("c.jpg", _jpeg(7203), "image/jpeg")),
    ]
    cars = [
        {"make": "Tesla", "external_id": "b-1", "attributes": {"color": "white"}},
        {"make": "Nope"},
        {"make": "BMW", "attributes": {"price": 9900}},
    ]
    r = client.post(
        "/api/v1/cars/batch", files=files, data={"cars": json.dumps(cars)}, headers=WRITE
    )
    assert r.status_code == 200, r.text
    first, bad, third = r.json()["results"]
    assert (first["make"], first["external_id"], first["attributes"]) == (
        "Tesla",
        "b-1",
        {"color": "white"},
    )
    assert bad["status"] == 415 and third["attributes"] == {"price": 9900}
    assert client.get("/api/v1/cars/external/b-1").json()["id"] == first["id"]

    wrong = client.post(
        "/api/v1/cars/batch",
        files=files[:1],
        data={"cars": json.dumps([{"make": "A"}, {"make": "B"}])},
        headers=WRITE,
    )
    _problem(wrong, 422, "1 were sent")
    typo = client.post("/api/v1/cars/batch", files=files[:1], data={"cars": "[{"}, headers=WRITE)
    _problem(typo, 422, "cars is not valid JSON")


def test_browse_facets_and_filters(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    for i, colour in enumerate(("red", "red", "black")):
        _add(
            client,
            7300 + i,
            make="Lada",
            attributes={"color": colour, "price": 3000.0 + i, "available": True},
        )
    walked: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/cars", params=params).json()
        walked += [c["id"] for c in page["cars"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(walked) == len(set(walked)) >= 12
    _problem(client.get("/api/v1/cars", params={"cursor": "forged"}), 422, "cursor")
    # A real cursor with its position changed, or its signature, is refused too.
    real = client.get("/api/v1/cars", params={"limit": 4}).json()["next_cursor"]
    body, _, signature = real.rpartition(".")
    for forged in (
        body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature,
        body + ".x",
    ):
        _problem(client.get("/api/v1/cars", params={"cursor": forged}), 422, "cursor")

    lada = {"filter": json.dumps({"make": "Lada", "price": {"lte": 3001}})}
    listed = client.get("/api/v1/cars", params=lada).json()["cars"]
    assert sorted(c["attributes"]["price"] for c in listed) == [3000.0, 3001.0]
    colours = client.get(
        "/api/v1/facets", params={"field": "color", "filter": json.dumps({"make": "Lada"})}
    ).json()
    assert colours == {
        "field": "color",
        "values": [{"value": "red", "count": 2}, {"value": "black", "count": 1}],
    }
    makes = {
        v["value"]: v["count"] for v in client.get("/api/v1/facets?field=make").json()["values"]
    }
    assert makes["Lada"] == 3 and makes["BMW"] >= 3
    _problem(client.get("/api/v1/facets?field=price"), 422, "price")
    _problem(
        client.get("/api/v1/cars", params={"filter": json.dumps({"dealer": "x"})}),
        422,
        "make, model",
    )
    _problem(client.get("/api/v1/cars", params={"filter": "{"}), 422, "filter is not valid JSON")


def test_search_with_filters_and_refinement(api: tuple[TestClient, Path]) -> None:
    client, gallery = api
    gallery_only = {"filter": json.dumps({"source": "gallery"})}

    def search(data: bytes, **form: Any) -> Any:
        files = {"image": ("q.jpg", data, "image/jpeg")}
        return client.post("/api/v1/search", files=files, data={"limit": "9"} | form)

    vectors: dict[str, np.ndarray] = {}  # gallery car id -> its vector
    makes: dict[str, str] = {}
    for photo in sorted(gallery.glob("*/*.jpg")):
        data = photo.read_bytes()
        top = search(data, limit="1", **gallery_only).json()["hits"][0]
        assert top["score"] > 0.999
        r = client.post("/api/v1/embed", files={"image": ("p.jpg", data, "image/jpeg")})
        vectors[top["id"]], makes[top["id"]] = np.asarray(r.json()["vector"]), top["make"]
    query = (gallery / "BMW_M3_Coupe_2012" / "0.jpg").read_bytes()
    q = np.asarray(
        client.post("/api/v1/embed", files={"image": ("q.jpg", query, "image/jpeg")}).json()[
            "vector"
        ]
    )
    tesla = sorted(i for i, m in makes.items() if m == "Tesla")[0]
    bmw = sorted((i for i, m in makes.items() if m == "BMW"), key=lambda i: -q @ vectors[i])
    negative = bmw[1:3]

    def best_score(car: str) -> float:  # Qdrant's best-score recommendation, as its docs say
        v = vectors[car]
        positive = max(q @ v, vectors[tesla] @ v)
        worst = max(vectors[n] @ v for n in negative)
        return float(positive if positive > worst else -worst)

    refined = search(query, positive=tesla, negative=",".join(negative), **gallery_only)
    assert refined.status_code == 200, refined.text
    ids = [h["id"] for h in refined.json()["hits"]]
    expected = sorted(set(vectors) - {tesla, *negative}, key=best_score, reverse=True)
    assert ids == expected
    assert refined.json()["identification"] == search(query).json()["identification"]

    filtered = search(query, filter=json.dumps({"make": ["Tesla", "Audi"], "year": {"gte": 2012}}))
    assert {h["make"] for h in filtered.json()["hits"]} == {"Tesla", "Audi"}
    similar = client.get(
        f"/api/v1/cars/{bmw[0]}/similar", params={"positive": tesla, "group_by": "class"}
    )
    assert similar.status_code == 200, similar.text
    assert tesla not in {h["id"] for g in similar.json()["groups"] for h in g["hits"]}

    _problem(search(query, positive=MISSING), 422, MISSING)
    assert search(query, negative=",".join([MISSING] * 11)).status_code == 422
    assert search(query, positive="not-an-id").status_code == 422
    _problem(search(query, filter=json.dumps({"price": "x"})), 422, "price")


def test_json_fields_are_validated_whole_and_name_the_bad_part(
    api: tuple[TestClient, Path],
) -> None:
    client, _ = api
    before = client.get("/api/v1/cars").json()["cars"]
    photo = io.BytesIO()
    scene(7100).save(photo, format="JPEG")
    files = [("images", ("a.jpg", photo.getvalue(), "image/jpeg"))]
    wrong_type = client.post(
        "/api/v1/cars/batch", files=files, data={"cars": '[{"year": "old"}]'}, headers=WRITE
    )
    _problem(wrong_type, 422, "cars[0].year")
    not_a_list = client.post(
        "/api/v1/cars/batch", files=files, data={"cars": '{"make": "A"}'}, headers=WRITE
    )
    _problem(not_a_list, 422, "valid list")
    not_an_object = client.get("/api/v1/cars", params={"filter": "[1, 2]"})
    _problem(not_an_object, 422, "valid dictionary")
    assert client.get("/api/v1/cars").json()["cars"] == before  # nothing added
