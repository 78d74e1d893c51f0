"""The decode budget: photos wait until their pixels fit, a queue past its bound gets 503, a
photo larger than the whole budget 422; and through the API, before any pixel is decoded."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.pixel_budget import PixelBudget
from app.problems import Problem
from app.settings import AppSettings
from carembed.images import decoded_pixels
from tests.conftest import wait_until


def test_a_photo_waits_until_its_pixels_fit_and_a_long_queue_is_refused() -> None:
    async def scenario() -> list[str]:
        budget = PixelBudget(total=100, queue=100)
        events: list[str] = []
        first_in, release = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with budget.reserve(80):
                events.append("first decodes")
                first_in.set()
                await release.wait()
            events.append("first done")

        async def second() -> None:
            async with budget.reserve(50):  # 80 + 50 > 100: waits for the first
                events.append("second decodes")

        tasks = [asyncio.create_task(first())]
        await first_in.wait()
        tasks.append(asyncio.create_task(second()))
        while budget.waiting != 50:
            await asyncio.sleep(0)
        with pytest.raises(Problem) as busy:  # 50 waiting + 60 > the queue of 100
            async with budget.reserve(60):
                pass
        assert busy.value.status == 503 and busy.value.retry_after == 1
        async with budget.reserve(20):  # fits beside the first: no wait
            events.append("small decodes")
        release.set()
        await asyncio.gather(*tasks)
        with pytest.raises(Problem) as huge:
            async with budget.reserve(101):
                pass
        assert huge.value.status == 422 and huge.value.slug == "too-many-pixels"
        assert budget.in_use == 0 and budget.waiting == 0
        return events

    assert asyncio.run(scenario()) == [
        "first decodes",
        "small decodes",
        "first done",
        "second decodes",
    ]


def _encoded(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


def test_decoded_pixels_from_the_header() -> None:
    assert decoded_pixels(_encoded((4000, 3000), "JPEG"), (256, 256)) == 500 * 375  # 1/8
    assert decoded_pixels(_encoded((1000, 600), "JPEG"), (256, 256)) == 500 * 300  # 1/2
    assert decoded_pixels(_encoded((4000, 3000), "PNG"), (256, 256)) == 4000 * 3000


def test_the_api_refuses_a_photo_over_the_budget_before_decoding_it(tmp_path: Path) -> None:
    settings = AppSettings(
        data_dir=tmp_path / "data", qdrant_path=tmp_path / "q", decode_pixel_budget=1_000_000
    )
    with TestClient(create_app(settings)) as client:
        big = _encoded((1200, 1000), "PNG")
        answer = client.post("/api/v1/search", files={"image": ("big.png", big)})
        assert answer.status_code == 422
        assert answer.json()["type"] == "/problems/too-many-pixels"
        small = _encoded((900, 1000), "PNG")
        assert client.post("/api/v1/embed", files={"image": ("s.png", small)}).status_code == 200


def test_a_gallery_photo_over_the_budget_has_no_thumbnail_but_its_file(tmp_path: Path) -> None:

    from indexer.payload import point_id

    gallery = tmp_path / "gallery" / "Big_Car_2012"
    gallery.mkdir(parents=True)
    big = _encoded((1200, 1000), "PNG")
    (gallery / "big.png").write_bytes(big)
    settings = AppSettings(
        gallery=gallery.parent,
        data_dir=tmp_path / "data",
        qdrant_path=tmp_path / "q",
        decode_pixel_budget=1_000_000,
    )
    import hashlib

    car = point_id(hashlib.sha256(big).hexdigest())
    with TestClient(create_app(settings)) as client:
        wait_until(
            lambda: client.get("/readyz").json()["indexing"]["state"] == "done",
            60,
            "the gallery indexed",
        )
        thumb = client.get(f"/api/v1/cars/{car}/image")
        assert thumb.status_code == 422 and thumb.json()["type"] == "/problems/too-many-pixels"
        full = client.get(f"/api/v1/cars/{car}/image", params={"size": "full"})
        assert full.status_code == 200 and full.content == big
