"""Two adds of one photo and a delete of its car, sent at once by real clients to a service in
its own process: every round ends with the car whole (point, photo, record, no tombstone) or
deleted whole (tombstone, nothing else)."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.service import Service
from indexer.payload import point_id
from tests.conftest import scene

KEY = "race-key"
ROUNDS = 25


def _photo(seed: int) -> tuple[bytes, str]:
    import hashlib

    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _tombstones(data_dir: Path) -> set[str]:
    path = data_dir / "tombstones.json"
    return set(json.loads(path.read_text())["deleted"]) if path.is_file() else set()


def _race(client: httpx.Client, data: bytes, car_id: str, delays: list[float]) -> list[int]:
    """Two adds and a delete, released together, each after its delay (0-40 ms apart, as in
    the probe that found the race); their status codes."""
    start = threading.Barrier(3)
    answers: list[int] = []

    def add(delay: float) -> None:
        start.wait(timeout=30)
        time.sleep(delay)
        files = {"image": ("c.jpg", data, "image/jpeg")}
        answers.append(client.post("/api/v1/cars", files=files).status_code)

    def delete(delay: float) -> None:
        start.wait(timeout=30)
        time.sleep(delay)
        answers.append(client.delete(f"/api/v1/cars/{car_id}").status_code)

    jobs = [
        threading.Thread(target=add, args=(delays[0],)),
        threading.Thread(target=add, args=(delays[1],)),
        threading.Thread(target=delete, args=(delays[2],)),
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
    return answers


@pytest.mark.slow
def test_adds_and_a_delete_of_one_photo_end_whole_or_deleted_whole(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    args = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(data_dir)]
    rng = random.Random(0)
    with (
        Service(args, env={"CARSEARCH_API_KEY": KEY, "CARSEARCH_ENGINE": "torch"}) as service,
        httpx.Client(base_url=service.url, headers={"X-API-Key": KEY}, timeout=60) as client,
    ):
        for round_ in range(ROUNDS):
            data, sha = _photo(5000 + round_)
            car_id = point_id(sha)
            client.post("/api/v1/cars", files={"image": ("c.jpg", data, "image/jpeg")})
            answers = _race(client, data, car_id, [rng.uniform(0, 0.04) for _ in range(3)])
            assert sorted(answers) in ([201, 201, 204], [201, 201, 404]), answers

            present = client.get(f"/api/v1/cars/{car_id}").status_code
            files = sorted(p.name for p in (data_dir / "uploads").glob(f"{car_id}.*"))
            dead = car_id in _tombstones(data_dir)
            if present == 200:
                assert files == [f"{car_id}.jpeg", f"{car_id}.json"] and not dead, (round_, files)
                image = client.get(f"/api/v1/cars/{car_id}/image", params={"size": "full"})
                assert image.status_code == 200 and image.content == data
            else:
                assert present == 404 and files == [] and dead, (round_, present, files, dead)
