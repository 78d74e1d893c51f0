"""Ten first requests for one car's thumbnail at once wait for one decode."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.routes import images
from app.settings import AppSettings
from tests.conftest import wait_until
from tests.indexer.conftest import make_gallery

CLIENTS = 10


def test_concurrent_first_thumbnails_share_one_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    settings = AppSettings(gallery=gallery, data_dir=tmp_path / "data", qdrant_path=tmp_path / "q")
    calls, release = [], threading.Event()
    make = images.write_thumbnail

    def counted(*args: object) -> None:
        calls.append(args)
        assert release.wait(30)
        make(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "write_thumbnail", counted)
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json()["indexing"]["state"] == "done",
            60,
            "the gallery indexed",
        )
        photo = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
        hit = client.post("/api/v1/search", files={"image": ("q.jpg", photo)}).json()["hits"][0]
        answers: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(client.get(f"/api/v1/cars/{hit['id']}/image"))
            )
            for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        services = client.app.state.services  # type: ignore[attr-defined]
        wait_until(
            lambda: services.thumbnails.waiting(hit["id"]) >= CLIENTS, 60, "every client waiting"
        )
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert len(calls) == 1
    assert [a.status_code for a in answers] == [200] * CLIENTS
    assert len({a.content for a in answers}) == 1 and answers[0].content[:2] == b"\xff\xd8"


def test_an_added_car_gets_its_thumbnail_from_the_add_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The add decodes the photo once, for the model and the thumbnail: the first thumbnail
    request decodes nothing."""

    def no_decode(*args: object) -> None:
        raise AssertionError("the thumbnail was decoded again")

    monkeypatch.setattr(images, "write_thumbnail", no_decode)
    settings = AppSettings(data_dir=tmp_path / "data", qdrant_path=tmp_path / "q", api_key="k")
    photo = (make_gallery(tmp_path / "gallery") / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 60, "the service ready")
        added = client.post(
            "/api/v1/cars", files={"image": ("c.jpg", photo)}, headers={"X-API-Key": "k"}
        )
        assert added.status_code == 201
        thumb = client.get(f"/api/v1/cars/{added.json()['id']}/image")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(thumb.content)).size == (160, 96)  # small photos stay whole


def test_an_added_elongated_photo_gets_the_search_vector_and_a_true_aspect_thumbnail(
    tmp_path: Path,
) -> None:
    """The add decodes as search does (an elongated photo shrunk along its long side for the
    squashing model), so the stored vector is the one /embed gives; its thumbnail keeps the
    photo's aspect all the same."""
    import io

    import numpy as np
    from PIL import Image

    from tests.conftest import scene, wait_until

    buf = io.BytesIO()
    scene(77, size=(900, 200)).save(buf, "JPEG", quality=90)
    photo = buf.getvalue()
    settings = AppSettings(data_dir=tmp_path / "data", qdrant_path=tmp_path / "q", api_key="k")
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, 60, "the service ready")
        car = client.post(
            "/api/v1/cars", files={"image": ("c.jpg", photo)}, headers={"X-API-Key": "k"}
        ).json()
        embedded = client.post("/api/v1/embed", files={"image": ("c.jpg", photo)}).json()
        services = client.app.state.services  # type: ignore[attr-defined]
        (stored,) = services.index.photo_vectors(
            services.index.serving(services.model.version), car["id"]
        )
        thumb = client.get(f"/api/v1/cars/{car['id']}/image")
    np.testing.assert_allclose(stored, embedded["vector"], atol=1e-5)
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 57)
