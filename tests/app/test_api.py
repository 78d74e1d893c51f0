"""The API end to end on a generated gallery in embedded Qdrant (real model, real HTTP stack)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import readyz_when, scene
from tests.indexer.conftest import make_gallery

KEY = "test-key"


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _wait_ready(client: TestClient) -> dict[str, object]:
    return readyz_when(client, lambda b: b.get("ready"), 60)


def _wait_indexed(client: TestClient, points: int) -> dict[str, object]:
    body = readyz_when(client, lambda b: b.get("indexing", {}).get("state") in ("done", "failed"))
    assert body["indexing"]["state"] == "done", body
    assert body["points"] == points
    return body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    root = tmp_path_factory.mktemp("served")
    gallery = make_gallery(root / "gallery")
    settings = AppSettings(
        gallery=gallery,
        qdrant_path=root / "qdrant",
        data_dir=root / "data",
        api_key=KEY,
        max_upload_bytes=200_000,
        max_wait_ms=20,
        max_batch=8,
    )
    with TestClient(create_app(settings)) as client:
        _wait_indexed(client, 9)
        yield client, gallery


def test_search_finds_the_same_car_first_with_metadata_and_timings(
    served: tuple[TestClient, Path],
) -> None:
    client, gallery = served
    data = (gallery / "Tesla_Model_S_Sedan_2012" / "2.jpg").read_bytes()
    r = client.post(
        "/api/v1/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"limit": "3"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["hits"][0]
    assert top["score"] == pytest.approx(1.0, abs=1e-3)
    assert (top["make"], top["year"], top["body"]) == ("Tesla", 2012, "Sedan")
    assert len(body["hits"]) == 3 and set(body["timings"]) == {"decode_ms", "embed_ms", "search_ms"}
    image = client.get(top["image_url"])
    assert image.status_code == 200 and image.content == data
    thumb = client.get(top["thumb_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_filters_narrow_results(served: tuple[TestClient, Path]) -> None:
    client, gallery = served
    data = (gallery / "Tesla_Model_S_Sedan_2012" / "0.jpg").read_bytes()
    r = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"limit": "20", "make": "BMW"},
    )
    hits = r.json()["hits"]
    assert len(hits) == 3 and {h["make"] for h in hits} == {"BMW"}
    r = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"limit": "20", "body": "Coupe", "year_min": "2012", "year_max": "2012"},
    )
    assert {h["body"] for h in r.json()["hits"]} == {"Coupe"} and len(r.json()["hits"]) == 6
    first = client.post(
        "/api/v1/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"limit": "3"}
    ).json()["hits"]
    r = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"limit": "2", "offset": "1"},
    )
    assert [h["id"] for h in r.json()["hits"]] == [h["id"] for h in first[1:3]]


def test_more_like_this_excludes_the_car_itself(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    data = _jpeg(scene(101))  # BMW 1.jpg's picture, recompressed
    first = client.post("/api/v1/search", files={"image": ("q.jpg", data, "image/jpeg")}).json()
    car_id = first["hits"][0]["id"]
    r = client.get(f"/api/v1/cars/{car_id}/similar", params={"limit": 20})
    assert r.status_code == 200
    ids = [h["id"] for h in r.json()["hits"]]
    assert car_id not in ids and len(ids) == 8
    car = client.get(f"/api/v1/cars/{car_id}").json()
    assert car["make"] == "BMW" and car["width"] == 160


@pytest.mark.parametrize(
    ("payload", "status", "slug"),
    [
        (b"plain text, not an image", 415, "unreadable-image"),
        (_jpeg(Image.new("RGB", (20, 20)))[:-1], 422, "too-small"),
        (None, 422, "too-many-pixels"),
        (b"x" * 400_000, 413, "too-large"),
    ],
)
def test_errors_are_problem_json_and_service_keeps_serving(
    served: tuple[TestClient, Path], payload: bytes | None, status: int, slug: str
) -> None:
    client, gallery = served
    if payload is None:
        buf = io.BytesIO()
        Image.new("1", (9000, 9000)).save(buf, "PNG")  # 81 Mpx, tiny file
        payload = buf.getvalue()
    r = client.post("/api/v1/search", files={"image": ("x.jpg", payload, "image/jpeg")})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == status
    assert "Traceback" not in r.text
    ok = client.post(
        "/api/v1/search",
        files={"image": ("q.jpg", (gallery / "BMW_M3_Coupe_2012" / "0.jpg").read_bytes())},
    )
    assert ok.status_code == 200


def test_bad_parameters_and_unknown_ids(served: tuple[TestClient, Path]) -> None:
    client, gallery = served
    data = (gallery / "BMW_M3_Coupe_2012" / "0.jpg").read_bytes()
    r = client.post("/api/v1/search", files={"image": ("q.jpg", data)}, data={"limit": "101"})
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-request"
    r = client.post("/api/v1/search", data={"limit": "3"})
    assert r.status_code == 422
    missing = "00000000-0000-0000-0000-000000000000"
    for url in (
        f"/api/v1/cars/{missing}",
        f"/api/v1/cars/{missing}/similar",
        f"/api/v1/cars/{missing}/image",
        "/api/v1/cars/../../etc/passwd/image",
        "/api/v1/cars/not-a-uuid",
    ):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.headers["content-type"].startswith("application/problem+json")


def test_add_and_delete_need_the_key(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    data = _jpeg(scene(4242))
    form = {"make": "Lada", "model": "Niva SUV", "year": "1990", "body": "SUV"}
    r = client.post("/api/v1/cars", files={"image": ("c.jpg", data)}, data=form)
    assert r.status_code == 403
    r = client.post(
        "/api/v1/cars", files={"image": ("c.jpg", data)}, data=form, headers={"X-API-Key": "wrong"}
    )
    assert r.status_code == 403
    r = client.post(
        "/api/v1/cars", files={"image": ("c.jpg", data)}, data=form, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 201, r.text
    car = r.json()
    hits = client.post("/api/v1/search", files={"image": ("q.jpg", data)}).json()["hits"]
    assert hits[0]["id"] == car["id"] and hits[0]["make"] == "Lada"
    assert client.get(car["image_url"]).content == data
    assert client.delete(f"/api/v1/cars/{car['id']}").status_code == 403
    assert client.delete(f"/api/v1/cars/{car['id']}", headers={"X-API-Key": KEY}).status_code == 204
    assert client.get(f"/api/v1/cars/{car['id']}").status_code == 404


def test_writes_are_forbidden_without_a_configured_key(tmp_path: Path) -> None:
    settings = AppSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/api/v1/cars",
            files={"image": ("c.jpg", _jpeg(scene(1)))},
            headers={"X-API-Key": "anything"},
        )
        assert r.status_code == 403 and r.json()["type"] == "/problems/writes-disabled"
        ready = _wait_ready(client)
        assert ready["ready"] and ready["points"] == 0  # an empty collection to add cars to
        r = client.post("/api/v1/search", files={"image": ("c.jpg", _jpeg(scene(1)))})
        assert r.status_code == 200 and r.json()["hits"] == []


def test_store_down_is_503_and_recovers(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    services = client.app.state.services  # type: ignore[attr-defined]
    real = services.index.engine.search

    def down(*args: object, **kwargs: object) -> None:
        from indexer.engines.base import StoreError

        raise StoreError("connection refused by qdrant at 10.0.0.1:6333")

    services.index.engine.search = down
    try:
        r = client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(scene(3)))})
        assert r.status_code == 503 and "10.0.0.1" not in r.text and r.headers["Retry-After"]
    finally:
        services.index.engine.search = real
    assert (
        client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(scene(3)))}).status_code
        == 200
    )


def test_health_ready_metrics_and_page(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["embedding_version"].startswith("efficientnetlite0")
    page = client.get("/")
    assert page.status_code == 200 and "carsearch" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: every asset is local
    assert client.get("/static/app.js").status_code == 200
    metrics = client.get("/metrics").text
    assert 'carsearch_requests_total{method="POST",route="/api/v1/search",status="200"}' in metrics
    assert "carsearch_stage_seconds_bucket" in metrics and "carsearch_batch_size_count" in metrics
    spec = client.get("/openapi.json").json()
    assert "/api/v1/search" in spec["paths"] and "/api/v1/cars/{car_id}/similar" in spec["paths"]


def test_concurrent_requests_share_forward_passes(served: tuple[TestClient, Path]) -> None:
    client, _ = served
    app = client.app
    uploads = [_jpeg(scene(500 + i)) for i in range(12)]

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            responses = await asyncio.gather(
                *[http.post("/api/v1/search", files={"image": ("q.jpg", data)}) for data in uploads]
            )
        return [r.status_code for r in responses]

    services = app.state.services  # type: ignore[attr-defined]
    before = services.metrics.batch_size.collect()[0]
    count_before = next(s.value for s in before.samples if s.name.endswith("_count"))
    sum_before = next(s.value for s in before.samples if s.name.endswith("_sum"))
    assert client.portal.call(burst) == [200] * 12  # type: ignore[union-attr]
    after = services.metrics.batch_size.collect()[0]
    passes = next(s.value for s in after.samples if s.name.endswith("_count")) - count_before
    images = next(s.value for s in after.samples if s.name.endswith("_sum")) - sum_before
    assert images == 12 and passes < 12  # some forward passes carried several uploads


@pytest.mark.parametrize("follow", [False, True])
def test_a_replica_started_after_a_rollout(tmp_path: Path, follow: bool) -> None:
    """The indexer moved the alias to a new model's collection. A replica that follows the live
    model serves the new model (loaded from the copy stored with the index); one told not to
    keeps its own model and searches the previous collection (its own vectors)."""
    from carembed.embedder import Embedder
    from carembed.model import build_model
    from indexer.index import CarIndex
    from indexer.settings import StoreSettings

    gallery = make_gallery(tmp_path / "gallery")
    old = Embedder(build_model())  # the service's (default) model
    new = Embedder(build_model(head="linear", embedding_dim=1280))
    store = StoreSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    index = CarIndex.open(store)
    old_collection = index.build(old, gallery, progress=False).collection
    new_collection = index.build(new, gallery, progress=False).collection
    index.close()
    settings = AppSettings(
        qdrant_path=tmp_path / "q",
        data_dir=tmp_path / "d",
        engine="torch",
        follow_live_model=follow,
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["live_collection"] == new_collection
        expected = (new.version, new_collection) if follow else (old.version, old_collection)
        assert (ready["embedding_version"], ready["collection"]) == expected
        data = (gallery / "Audi_TTS_Coupe_2012" / "2.jpg").read_bytes()
        body = client.post("/api/v1/search", files={"image": ("q.jpg", data)}).json()
        assert body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert body["embedding_version"] == expected[0]
