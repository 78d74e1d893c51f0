"""The service against a real Qdrant server (runs when QDRANT_URL is set)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import wait_until
from tests.indexer.conftest import make_gallery

pytestmark = pytest.mark.qdrant_server
URL = os.environ.get("QDRANT_URL")


@pytest.mark.skipif(not URL, reason="QDRANT_URL is not set: no Qdrant server to test against")
def test_index_and_search_on_a_server(tmp_path: Path) -> None:

    gallery = make_gallery(tmp_path / "gallery")
    settings = AppSettings(
        qdrant_url=URL,
        qdrant_api_key=os.environ.get("QDRANT_API_KEY"),
        alias="cars-test-app",
        gallery=gallery,
        data_dir=tmp_path / "d",
        engine="torch",
    )
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json()["indexing"]["state"] != "running",
            120,
            "the gallery indexed",
        )
        data = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
        hits = client.post(
            "/api/v1/search", files={"image": ("q.jpg", data)}, data={"make": "BMW"}
        ).json()["hits"]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3) and len(hits) == 3
