"""Replays the hostile-but-legitimate probe against `carsearch serve` (a subprocess on
127.0.0.1, empty embedded store, the shipped model), ``--runs`` times, each in a fresh service:

1. ``--rounds`` rounds of two adds of one photo and a delete of its car, 0-40 ms apart:
   inconsistent end states (a car present without its photo or record, or a deleted car with
   anything left but its tombstone);
2. 4 concurrent batch searches of 16 tiny lossless 6000 x 6000 WebPs while one client keeps
   searching with a normal photo: peak resident memory over the idle service, the normal
   search's p95;
3. one search with a 1,250,000 x 32 px RGBA PNG: peak growth;
4. 10 concurrent first thumbnails of a 6000 x 6000 WebP car of the gallery: peak growth (the
   same photo uploaded is refused: it cannot be decoded reduced within the pixel budget);
5. a 32 MB header (time to its 431) and a body that never comes (time to its 408);
6. resident memory at rest after all of it, against before.

    python benchmarks/hostile.py [--runs 3] [--rounds 150]

The last line of each run is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from service import Service, peak_rss_during

from indexer.payload import point_id

logger = logging.getLogger("hostile")
KEY = "hostile-key"
READ_TIMEOUT_S = 5.0


def _encoded(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _race(url: str, data_dir: Path, rounds: int) -> int:
    """Inconsistent end states among ``rounds`` add/add/delete races."""
    rng = random.Random(0)
    bad = 0
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client:
        for round_ in range(rounds):
            img = Image.new("RGB", (160, 96), tuple(rng.randrange(256) for _ in range(3)))
            data = _encoded(img, "JPEG", quality=90)
            sha = hashlib.sha256(data).hexdigest()
            files = {"image": ("c.jpg", data, "image/jpeg")}
            car = client.post("/api/v1/cars", files=files).json()["id"]
            start = threading.Barrier(3)

            def act(
                kind: str, delay: float, car: str = car, start: Any = start, data: bytes = data
            ) -> None:
                start.wait(timeout=30)
                time.sleep(delay)
                if kind == "add":
                    client.post("/api/v1/cars", files={"image": ("c.jpg", data, "image/jpeg")})
                else:
                    client.delete(f"/api/v1/cars/{car}")

            jobs = [
                threading.Thread(target=act, args=(k, rng.uniform(0, 0.04)))
                for k in ("add", "add", "delete")
            ]
            for job in jobs:
                job.start()
            for job in jobs:
                job.join(timeout=60)
            present = client.get(f"/api/v1/cars/{car}").status_code == 200
            left = sorted(p.suffix for p in (data_dir / "uploads").glob(f"{sha}.*"))
            tombs = data_dir / "tombstones.json"
            dead = tombs.is_file() and car in json.loads(tombs.read_text())["deleted"]
            whole = present and len(left) == 2 and not dead
            gone = not present and not left and dead
            if not (whole or gone):
                bad += 1
                logger.warning(
                    "round %d: present %s, files %s, tombstone %s", round_, present, left, dead
                )
    return bad


async def _normal_searches(url: str, photo: bytes, stop: asyncio.Event) -> list[float]:
    times: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while not stop.is_set():
            started = time.perf_counter()
            await http.post("/api/v1/search", files={"image": ("n.jpg", photo)})
            times.append(time.perf_counter() - started)
    return times


async def _bombs(url: str, bomb: bytes, photo: bytes) -> tuple[list[int], list[float]]:
    stop = asyncio.Event()
    normal = asyncio.create_task(_normal_searches(url, photo, stop))
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        files = [("images", ("b.webp", bomb, "image/webp")) for _ in range(16)]
        answers = await asyncio.gather(
            *[http.post("/api/v1/search/batch", files=files) for _ in range(4)]
        )
    stop.set()
    statuses = [r.get("status", 200) for a in answers for r in a.json()["results"]]
    return statuses, await normal


def _raw(port: int, request: bytes, payload: bytes = b"") -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        try:
            sock.sendall(request)
            for i in range(0, len(payload), 65536):
                sock.sendall(payload[i : i + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(60)
        answer = sock.recv(200)
        return answer[:12], time.monotonic() - started


def run(rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="carsearch-hostile-"))
    data_dir = work / "data"
    gallery = work / "gallery" / "Big_Photo_2012"
    gallery.mkdir(parents=True)
    args = ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(data_dir)]
    args += ["--gallery", str(gallery.parent)]
    env = {"CARSEARCH_API_KEY": KEY, "CARSEARCH_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    bomb = _encoded(Image.new("RGB", (6000, 6000), (40, 90, 200)), "WEBP", lossless=True)
    strip = _encoded(Image.new("RGBA", (1_250_000, 32), (200, 30, 30, 128)), "PNG")
    rng = np.random.default_rng(0)
    photo = _encoded(Image.fromarray(rng.integers(0, 255, (300, 400, 3), np.uint8)), "JPEG")
    (gallery / "big.webp").write_bytes(bomb)
    figures: dict[str, Any] = {"bomb_bytes": len(bomb), "strip_bytes": len(strip)}
    with Service(args, env=env) as service:
        port = int(service.url.rsplit(":", 1)[1])
        with httpx.Client(base_url=service.url, timeout=60) as client:
            client.post("/api/v1/search", files={"image": ("n.jpg", photo)})  # warm-up
        at_rest = service.rss_mb()
        figures["rss_at_rest_mb"] = round(at_rest, 1)
        figures["race_inconsistent"] = _race(service.url, data_dir, rounds)

        before, peak, result = peak_rss_during(
            service, lambda: asyncio.run(_bombs(service.url, bomb, photo))
        )
        statuses: list[int] = result[0]  # type: ignore[index]
        normal: list[float] = result[1]  # type: ignore[index]
        figures["bombs_growth_mb"] = round(peak - before, 1)
        figures["bombs_statuses"] = sorted(set(statuses))
        figures["normal_search_p95_ms"] = round(1e3 * float(np.percentile(normal, 95)), 1)
        figures["normal_searches"] = len(normal)

        def strip_search() -> int:
            files = {"image": ("s.png", strip, "image/png")}
            return httpx.post(service.url + "/api/v1/search", files=files, timeout=120).status_code

        before, peak, status = peak_rss_during(service, strip_search)
        figures["strip_growth_mb"], figures["strip_status"] = round(peak - before, 1), status

        with httpx.Client(base_url=service.url, headers={"X-API-Key": KEY}, timeout=300) as c:
            upload = c.post("/api/v1/cars", files={"image": ("b.webp", bomb, "image/webp")})
            figures["bomb_upload_status"] = upload.status_code
            deadline = time.monotonic() + 300
            while c.get("/readyz").json()["indexing"]["state"] != "done":
                assert time.monotonic() < deadline, "the gallery was not indexed"
                time.sleep(0.2)
        car = {"id": point_id(hashlib.sha256(bomb).hexdigest())}

        async def thumbs() -> list[int]:
            async with httpx.AsyncClient(base_url=service.url, timeout=300) as http:
                got = await asyncio.gather(
                    *[http.get(f"/api/v1/cars/{car['id']}/image") for _ in range(10)]
                )
            return [r.status_code for r in got]

        before, peak, codes = peak_rss_during(service, lambda: asyncio.run(thumbs()))
        figures["thumbs_growth_mb"] = round(peak - before, 1)
        figures["thumbs_statuses"] = sorted(set(codes))  # type: ignore[call-overload]

        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        answer, seconds = _raw(port, head, b"a" * (32 << 20))
        figures["big_header"] = [answer.decode(errors="replace"), round(seconds, 2)]
        request = (
            b"POST /api/v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
            b"form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
        )
        answer, seconds = _raw(port, request)
        figures["silent_body"] = [answer.decode(errors="replace"), round(seconds, 2)]
        figures["rss_after_mb"] = round(service.rss_mb(), 1)
        figures["rss_change_pct"] = round(100 * (service.rss_mb() / at_rest - 1), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=150)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for index in range(args.runs):
        figures = run(args.rounds)
        logger.info("run %d: %s", index + 1, figures)
        sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
