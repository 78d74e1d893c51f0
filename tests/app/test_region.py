"""``box``: search, identify, embed and add use the region of the photo the user pointed at, in
the photo as shown (EXIF orientation applied); boxes that are not one are refused."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import scene, street, wait_until
from tests.indexer.conftest import make_gallery

KEY = "region-key"
LEFT, RIGHT = "0,0,0.5,1", "0.5,0,1,1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("region")
    settings = AppSettings(
        gallery=make_gallery(root / "gallery"),
        qdrant_path=root / "q",
        data_dir=root / "d",
        api_key=KEY,
        max_wait_ms=5,
    )
    with TestClient(create_app(settings)) as test_client:
        wait_until(
            lambda: test_client.get("/readyz").json().get("indexing", {}).get("state") == "done",
            120,
            "the gallery indexed",
        )
        yield test_client


def _post(client: TestClient, path: str, data: bytes, **form: str) -> dict:  # type: ignore[type-arg]
    r = client.post(path, files={"image": ("s.jpg", data, "image/jpeg")}, data=form)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("rotated", [False, True])
def test_the_box_picks_the_car_searched_identified_and_embedded(
    client: TestClient, rotated: bool
) -> None:
    photo = street(rotated)
    left = _post(client, "/api/v1/search", photo, box=LEFT, limit="1")["hits"][0]
    right = _post(client, "/api/v1/search", photo, box=RIGHT, limit="1")["hits"][0]
    assert (left["make"], right["make"]) == ("Audi", "Tesla")
    assert left["score"] > 0.97 and right["score"] > 0.97
    named = _post(client, "/api/v1/identify", photo, box=RIGHT)["candidates"][0]
    assert named["make"] == "Tesla"

    alone = io.BytesIO()
    scene(201).save(alone, "JPEG", quality=95)
    whole = np.asarray(_post(client, "/api/v1/embed", alone.getvalue())["vector"])
    boxed = np.asarray(_post(client, "/api/v1/embed", photo, box=RIGHT)["vector"])
    assert float(whole @ boxed) > 0.97


def test_an_added_car_is_its_region(client: TestClient) -> None:
    r = client.post(
        "/api/v1/cars",
        files={"image": ("s.jpg", street(rotated=True), "image/jpeg")},
        data={"box": LEFT, "make": "Audi"},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 201, r.text
    car = r.json()
    assert (car["width"], car["height"]) == (160, 96)  # the region, upright
    stored = client.get(car["image_url"]).content
    with Image.open(io.BytesIO(stored)) as photo:
        assert photo.size == (160, 96)
    again = _post(client, "/api/v1/search", street(), box=LEFT, limit="2")["hits"]
    assert car["id"] in {h["id"] for h in again}


@pytest.mark.parametrize(
    ("box", "words"),
    [
        ("0.5,0.2,0.2,0.9", "right of x0"),
        ("0,0,1.5,1", "between 0 and 1"),
        ("0,0,1", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("0,0,0.05,0.05", "each side must be at least"),
        ("0,0,nan,1", "four numbers"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/search", "/api/v1/identify", "/api/v1/embed"])
def test_bad_boxes_are_refused(client: TestClient, path: str, box: str, words: str) -> None:
    r = client.post(path, files={"image": ("s.jpg", street(), "image/jpeg")}, data={"box": box})
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_a_bad_box_adds_nothing(client: TestClient, tmp_path: Path) -> None:
    before = client.get("/api/v1/cars", params={"limit": 1000}).json()["cars"]
    r = client.post(
        "/api/v1/cars",
        files={"image": ("s.jpg", street(), "image/jpeg")},
        data={"box": "0.9,0,0.1,1"},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 422
    assert client.get("/api/v1/cars", params={"limit": 1000}).json()["cars"] == before
