"""The service under misuse and failure, through the real stack: links and paths that lead
out of the gallery, racing thumbnails, made-up methods, full disks, shutdowns mid-run, odd
requests."""

from __future__ import annotations

import asyncio
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import scene
from tests.indexer.conftest import CLASSES

KEY = "hardening-key"


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _ready(client: TestClient, points: int) -> None:
    for _ in range(600):
        body = client.get("/readyz").json()
        if body.get("indexing", {}).get("state") == "done" and body.get("points") == points:
            return
        asyncio.run(asyncio.sleep(0.1))
    raise AssertionError(client.get("/readyz").json())


@pytest.fixture(scope="module")
def manifest_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A gallery read through its manifest file, with a symlinked class folder inside it and
    a symlinked file that leads outside."""
    root = tmp_path_factory.mktemp("hardening")
    gallery = root / "gallery"
    rows = ["path,class_name"]
    for c, name in enumerate(CLASSES):
        (gallery / "photos" / name).mkdir(parents=True)
        for i in range(2):
            scene(300 + 10 * c + i).save(gallery / "photos" / name / f"{i}.jpg", quality=90)
            rows.append(f"photos/{name}/{i}.jpg,{name}")
    (gallery / "linked").symlink_to(gallery / "photos" / CLASSES[0])  # inside the gallery
    rows.append(f"linked/0.jpg,{CLASSES[0]}")  # the same bytes: indexed once
    outside = root / "outside.jpg"
    scene(999).save(outside, quality=90)
    (gallery / "photos" / "escape.jpg").symlink_to(outside)
    rows.append(f"photos/escape.jpg,{CLASSES[1]}")
    manifest = gallery / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, outside


@pytest.fixture(scope="module")
def served(
    manifest_gallery: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("served-hardening")
    settings = AppSettings(
        gallery=manifest_gallery[0],
        qdrant_path=root / "q",
        data_dir=root / "d",
        api_key=KEY,
        engine="torch",
        cors_origins=["https://cars.example"],
        max_upload_bytes=300_000,
    )
    with TestClient(create_app(settings)) as client:
        _ready(client, 7)
        yield client


def _top(client: TestClient, data: bytes) -> dict[str, object]:
    r = client.post("/api/v1/search", files={"image": ("q.jpg", data)}, data={"limit": "1"})
    assert r.status_code == 200, r.text
    return r.json()["hits"][0]  # type: ignore[no-any-return]


def test_photos_of_a_manifest_gallery_are_served_and_links_out_are_refused(
    served: TestClient, manifest_gallery: tuple[Path, Path]
) -> None:
    manifest, outside = manifest_gallery
    hit = _top(served, (manifest.parent / "photos" / CLASSES[2] / "1.jpg").read_bytes())
    full = served.get(str(hit["image_url"]))
    assert (
        full.status_code == 200
        and full.content == (manifest.parent / "photos" / CLASSES[2] / "1.jpg").read_bytes()
    )
    assert served.get(str(hit["thumb_url"])).status_code == 200
    escaped = _top(served, outside.read_bytes())
    assert escaped["score"] == pytest.approx(1.0, abs=1e-3)  # indexed: the reader follows links
    r = served.get(str(escaped["image_url"]))
    assert r.status_code == 404 and r.json()["type"] == "/problems/image-unavailable"


def test_the_traversal_guards_themselves_refuse(served: TestClient) -> None:
    raw = "/api/v1/cars/%2E%2E/image"  # arrives as the car id "..", not normalised away
    request = httpx.Request("GET", httpx.URL("http://testserver" + raw))
    assert request.url.raw_path == raw.encode()
    r = served.send(request)
    assert r.status_code == 404 and r.json()["detail"] == "car ids are UUIDs"  # the id guard
    # A payload path that leads out of the gallery (a hostile manifest, an edited store).
    hit = _top(served, _jpeg(1))
    services = served.app.state.services  # type: ignore[attr-defined]
    live = services.index.state().live
    path = services.index.get_many(live, [hit["photo_id"]])[0].payload.path
    services.index.engine.set_payload(live, hit["photo_id"], {"path": "../../../../etc/passwd"})
    try:
        r = served.get(str(hit["image_url"]))
        assert r.status_code == 404 and r.json()["type"] == "/problems/image-unavailable"
    finally:
        services.index.engine.set_payload(live, hit["photo_id"], {"path": path})


def test_concurrent_first_thumbnail_requests_agree(
    served: TestClient, manifest_gallery: tuple[Path, Path]
) -> None:
    manifest, _ = manifest_gallery
    hit = _top(served, (manifest.parent / "photos" / CLASSES[1] / "0.jpg").read_bytes())
    app = served.app

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await asyncio.gather(*[http.get(str(hit["thumb_url"])) for _ in range(12)])

    responses = served.portal.call(burst)  # type: ignore[union-attr]
    assert [r.status_code for r in responses] == [200] * 12
    assert len({r.content for r in responses}) == 1
    assert Image.open(io.BytesIO(responses[0].content)).size[0] <= 256
    thumbs = served.app.state.services.thumbs_dir  # type: ignore[attr-defined]
    assert not [p for p in thumbs.iterdir() if p.name.startswith(".")]  # no temporary left


def test_made_up_methods_do_not_grow_the_metrics(served: TestClient) -> None:
    def burst(tag: str) -> int:
        for i in range(30):
            assert served.request(f"{tag}{i}", f"/nowhere/{tag}/{i}").status_code in (404, 405)
            assert served.request(f"{tag}{i}", "/healthz").status_code == 405
        return served.get("/metrics").text.count("\n")

    served.get("/metrics")  # its own series exists before counting
    first = burst("BREW")
    assert burst("STEEP") == first  # 60 more made-up methods and paths: not one new series
    text = served.get("/metrics").text
    assert 'method="other"' in text and "BREW" not in text and "/nowhere" not in text


def test_a_reversed_year_range_is_refused(served: TestClient) -> None:
    r = served.post(
        "/api/v1/search",
        files={"image": ("q.jpg", _jpeg(1))},
        data={"year_min": "2012", "year_max": "2001"},
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-request"


def test_a_full_disk_is_a_clear_507_and_leaves_nothing_half_written(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, data: bytes) -> None:
        with path.open("wb") as fh:  # what a full disk does: part of the file, then ENOSPC
            fh.write(data[:10])
        path.unlink()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import indexer.ledger

    monkeypatch.setattr(indexer.ledger, "write_atomically", full)
    r = served.post(
        "/api/v1/cars", files={"image": ("c.jpg", _jpeg(77))}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 507 and r.json()["type"] == "/problems/insufficient-storage", r.text
    uploads = served.app.state.services.uploads_dir  # type: ignore[attr-defined]
    assert not uploads.exists() or not list(uploads.iterdir())
    assert _top(served, _jpeg(77))["score"] < 0.999  # not in the index either


def test_the_body_limit_answer_carries_cors_headers(served: TestClient) -> None:
    r = served.post(
        "/api/v1/search",
        files={"image": ("big.jpg", b"x" * 400_000)},
        headers={"Origin": "https://cars.example"},
    )
    assert r.status_code == 413
    assert r.headers["access-control-allow-origin"] == "https://cars.example"


def test_readyz_does_not_show_the_gallery_path(
    served: TestClient, manifest_gallery: tuple[Path, Path]
) -> None:
    assert str(manifest_gallery[0].parent) not in served.get("/readyz").text


@pytest.mark.slow
def test_shutdown_stops_a_gallery_run_at_its_next_batch_and_the_next_start_resumes(
    tmp_path: Path,
) -> None:
    import time

    from tests.indexer.conftest import make_gallery

    gallery = make_gallery(tmp_path / "gallery", per_class=12)  # 36 photos, batches of one
    settings = AppSettings(
        gallery=gallery, qdrant_path=tmp_path / "q", data_dir=tmp_path / "d", engine="torch"
    )
    with TestClient(create_app(settings)) as client:
        while client.get("/readyz").json()["indexing"]["done"] < 3:
            time.sleep(0.05)
        closing = time.monotonic()
    assert time.monotonic() - closing < 5  # not the whole run
    with TestClient(create_app(settings)) as client:
        _ready(client, 36)
        message = client.get("/readyz").json()["indexing"]["message"]
    unchanged = int(message.split("unchanged ")[1].split(",")[0])
    assert 3 <= unchanged < 36  # what the first run wrote was kept


def test_two_files_and_a_body_that_is_not_multipart_are_clear_errors(served: TestClient) -> None:
    two = served.post(
        "/api/v1/search",
        files=[("image", ("a.jpg", _jpeg(1))), ("image", ("b.jpg", _jpeg(2)))],
    )
    assert two.status_code == 422 and two.json()["type"] == "/problems/invalid-request", two.text
    for body, kind in ((b'{"image": "x"}', "application/json"), (b"raw bytes", "image/jpeg")):
        r = served.post("/api/v1/search", content=body, headers={"Content-Type": kind})
        assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-request", r.text
