"""Ten first requests for one car's thumbnail at once wait for one decode."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.routes import cars
from app.settings import AppSettings
from tests.indexer.conftest import make_gallery

CLIENTS = 10


def test_concurrent_first_thumbnails_share_one_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    settings = AppSettings(gallery=gallery, data_dir=tmp_path / "data", qdrant_path=tmp_path / "q")
    calls, release = [], threading.Event()
    make = cars._thumbnail

    def counted(*args: object) -> None:
        calls.append(args)
        assert release.wait(30)
        make(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cars, "_thumbnail", counted)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").json()["indexing"]["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.1)
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
        while services.thumbnails.waiting(hit["id"]) < CLIENTS:
            assert time.monotonic() < deadline, services.thumbnails.waiting(hit["id"])
            time.sleep(0.01)
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert len(calls) == 1
    assert [a.status_code for a in answers] == [200] * CLIENTS
    assert len({a.content for a in answers}) == 1 and answers[0].content[:2] == b"\xff\xd8"
