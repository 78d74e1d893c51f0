"""Identification, one result per model, batch search, embeddings and the read key, through
the real stack on a generated gallery."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from carembed.artifact import load_or_default
from carembed.embedder import Embedder
from carembed.settings import ModelSettings
from tests.conftest import scene, wait_until
from tests.indexer.conftest import CLASSES, make_gallery

READ, WRITE = "read-key", "write-key"


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("identify")
    gallery = make_gallery(root / "gallery", per_class=4)
    settings = AppSettings(
        gallery=gallery,
        qdrant_path=root / "q",
        data_dir=root / "d",
        api_key=WRITE,
        read_api_key=READ,
        engine="torch",
        identify_k=3,
    )
    with TestClient(create_app(settings), headers={"X-API-Key": READ}) as client:
        wait_until(lambda: client.get("/readyz").json()["points"] == 12, 120, "the gallery indexed")
        yield client, gallery


def test_a_search_says_what_car_it_probably_is(served: tuple[TestClient, Path]) -> None:
    client, gallery = served
    photo = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
    body = client.post("/api/v1/search", files={"image": ("q.jpg", photo)}).json()
    ident = body["identification"]
    top = ident["candidates"][0]
    assert (top["make"], top["model"], top["year"]) == ("BMW", "M3 Coupe", 2012)
    assert ident["make"]["make"] == "BMW" and ident["calibrated"] is False  # default model
    assert top["confidence"] == pytest.approx(top["share"])  # uncalibrated: the share
    assert sum(c["share"] for c in ident["candidates"]) <= 1.0 + 1e-6
    only = client.post("/api/v1/identify", files={"image": ("q.jpg", photo)}).json()
    assert only == ident  # the same answer alone
    filtered = client.post(
        "/api/v1/search", files={"image": ("q.jpg", photo)}, data={"make": "Tesla"}
    ).json()
    assert {h["make"] for h in filtered["hits"]} == {"Tesla"}
    assert filtered["identification"]["candidates"][0]["make"] == "BMW"  # from all cars


def test_one_result_per_model(served: tuple[TestClient, Path]) -> None:
    client, gallery = served
    photo = (gallery / "Audi_TTS_Coupe_2012" / "0.jpg").read_bytes()
    body = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", photo)},
        data={"group_by": "class", "limit": "3", "group_size": "2"},
    ).json()
    groups = body["groups"]
    assert len(groups) == 3 and len({g["class_name"] for g in groups}) == 3
    assert [g["score"] for g in groups] == sorted((g["score"] for g in groups), reverse=True)
    assert groups[0]["make"] == "Audi" and all(len(g["hits"]) == 2 for g in groups)
    for g in groups:
        assert g["score"] == g["hits"][0]["score"]
        assert {h["class_name"] for h in g["hits"]} == {g["class_name"]}
    page = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", photo)},
        data={"group_by": "class", "limit": "2", "offset": "1"},
    ).json()["groups"]
    assert [g["class_name"] for g in page] == [g["class_name"] for g in groups[1:3]]


def test_batch_search_answers_each_photo_in_order_and_a_bad_one_alone(
    served: tuple[TestClient, Path],
) -> None:
    client, gallery = served
    photos = [
        ("images", ("a.jpg", (gallery / CLASSES[0] / "2.jpg").read_bytes())),
        ("images", ("bad.jpg", b"not an image")),
        ("images", ("c.jpg", (gallery / CLASSES[2] / "3.jpg").read_bytes())),
    ]
    r = client.post("/api/v1/search/batch", files=photos, data={"limit": "2"})
    assert r.status_code == 200, r.text
    first, bad, third = r.json()["results"]
    for answer in (first, third):  # each photo's own decode, the shared forward, its search
        assert min(answer["timings"].values()) > 0, answer["timings"]
    assert first["hits"][0]["class_name"].startswith("Audi") and len(first["hits"]) == 2
    assert bad["status"] == 415 and bad["type"] == "/problems/unreadable-image"
    assert third["hits"][0]["class_name"].startswith("Tesla")
    too_many = [("images", ("x.jpg", _jpeg(i))) for i in range(17)]
    assert client.post("/api/v1/search/batch", files=too_many).status_code == 422


def test_embed_returns_the_vector_carsearch_embed_computes(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    data = _jpeg(5)
    body = client.post("/api/v1/embed", files={"image": ("q.jpg", data)}).json()
    local = Embedder(load_or_default(ModelSettings().model_dir), engine="torch").embed([data])[0]
    assert body["dim"] == len(body["vector"]) == 1280
    assert body["embedding_version"] == client.get("/readyz").json()["embedding_version"]
    np.testing.assert_allclose(body["vector"], local, atol=1e-4)


def test_the_read_key_is_needed_when_set(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    data = _jpeg(6)
    for key, status in (("", 403), ("wrong", 403), (READ, 200), (WRITE, 200)):
        headers = {"X-API-Key": key}
        r = client.post("/api/v1/search", files={"image": ("q.jpg", data)}, headers=headers)
        assert r.status_code == status, (key, r.text)
        for url in ("/api/v1/cars/00000000-0000-0000-0000-000000000000", "/api/v1/identify"):
            answer = client.request("GET" if "cars" in url else "POST", url, headers=headers)
            assert (answer.status_code == 403) == (status == 403), (url, key)
        assert client.get("/healthz", headers=headers).status_code == 200  # health stays open


def test_without_a_read_key_searches_are_open(tmp_path: Path) -> None:
    settings = AppSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d", engine="torch")
    with TestClient(create_app(settings)) as client:
        while not client.get("/readyz").json().get("ready"):
            time.sleep(0.05)
        r = client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(7))})
        assert r.status_code == 200 and r.json()["identification"]["candidates"] == []
