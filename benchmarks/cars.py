"""Cars of several photos in the index: 100,000 photos in 25,000 cars on Qdrant Edge.

    python benchmarks/cars.py [--photos 100000] [--per-car 4] [--queries 200] [--service]

Synthetic but shaped like the real thing (``benchmarks/store.py``'s cars: 1280-d unit vectors
around 196 car models, real payloads), with each car's photos near the car (a car's photos are
alike, more than two cars of one model). Measured in the engine, through ``CarIndex``:

- a search for 10 cars (one hit per car, at its best photo) p50, and its recall against the
  exact per-car oracle (numpy: a car's score is its best photo's cosine);
- 10 pages of 10 cars (offset paging): each car at most once, none skipped;
- facets over cars (``make``, each car counted once) p50, a browse page of 100 cars p50;
- bytes on disk per photo, against the same photos stored as before cars had photos (no car id,
  no cover, no payload indexes on them), with ``--compare``;
- with ``--service``: ``carsearch serve`` on the same store, a one-photo search p50 (HTTP).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from service import Service
from store import CLASSES, DIM, MAKES, car_payload, latencies_ms

from indexer.engines.base import NewPoint
from indexer.index import CarIndex
from indexer.payload import CarFilter, photo_id, point_id
from indexer.settings import StoreSettings
from indexer.versions import AliasState, new_collection_name

logger = logging.getLogger("cars")


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return unit


def synthetic_fleet(
    cars: int, per_car: int, queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo vectors, car -> class, query vectors): car ``c``'s photos are rows
    ``c * per_car ...``; queries are new photos of random cars."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, DIM)).astype(np.float32)
    classes = rng.integers(0, CLASSES, cars)
    vectors = np.empty((cars * per_car, DIM), np.float32)
    for start in range(0, cars, 2_500):
        end = min(cars, start + 2_500)
        car = centres[classes[start:end]] + 1.0 * rng.standard_normal((end - start, DIM))
        photos = car[:, None, :] + 0.7 * rng.standard_normal((end - start, per_car, DIM))
        vectors[start * per_car : end * per_car] = _unit(photos.reshape(-1, DIM))
    picked = rng.integers(0, cars, queries)
    query = centres[classes[picked]] + 1.0 * rng.standard_normal((queries, DIM))
    return vectors, classes, _unit(query + 0.7 * rng.standard_normal((queries, DIM)))


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write(
    index: CarIndex, name: str, vectors: np.ndarray, classes: np.ndarray, per_car: int, cars: bool
) -> float:
    """Write the photos (``cars``: with their car id and cover) and index them; seconds."""
    start = time.perf_counter()
    batch: list[NewPoint] = []
    for i, vector in enumerate(vectors):
        car = i // per_car
        sha = f"{i:064x}"
        car_id = point_id(f"car-{car}")
        payload = car_payload(i, int(classes[car]))
        if cars:
            payload = payload.model_copy(update={"car_id": car_id, "cover": i % per_car == 0})
        batch.append(NewPoint(photo_id(car_id, sha) if cars else point_id(sha), vector, payload))
        if len(batch) == 256:
            index.engine.upsert(name, batch)
            batch = []
    index.engine.upsert(name, batch)
    index.engine.optimize(name)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--per-car", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--compare", action="store_true", help="also the photos without cars")
    parser.add_argument("--service", action="store_true", help="also the service's search")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cars = args.photos // args.per_car
    vectors, classes, queries = synthetic_fleet(cars, args.per_car, args.queries, args.seed)
    work = Path(tempfile.mkdtemp(prefix="carsearch-cars-"))
    figures: dict[str, object] = {"photos": cars * args.per_car, "cars": cars, "dim": DIM}
    try:
        version = "bench"
        if args.service:
            from app.registry import make_embedder
            from app.settings import AppSettings
            from carembed.artifact import load_or_default

            served = AppSettings(qdrant_path=work / "qdrant", data_dir=work / "data")
            version = make_embedder(served, load_or_default(served.model_dir)).version
        settings = StoreSettings(qdrant_path=work / "qdrant", data_dir=work / "data")
        index = CarIndex.open(settings)
        name = new_collection_name(settings.alias, version)
        index.engine.create(name, DIM, bulk=True)
        figures["write_and_index_s"] = round(
            _write(index, name, vectors, classes, args.per_car, True), 1
        )
        size = _folder_bytes(work / "qdrant" / "collections" / name)
        figures["bytes_per_photo"] = round(size / len(vectors))

        car_of = np.arange(len(vectors)) // args.per_car
        exact = queries @ vectors.T
        recalls = []
        found: list[list[str]] = []

        def ten_cars(q: int) -> None:
            grouped = index.search_cars(name, queries[q], CarFilter(), 10)
            found.append([g[0].car_id for g in grouped.groups])

        latencies_ms(ten_cars, 20)
        found.clear()
        search_ms = latencies_ms(ten_cars, args.queries)
        for q, got in enumerate(found):
            best = np.full(cars, -2.0, np.float32)
            np.maximum.at(best, car_of, exact[q])
            truth = {point_id(f"car-{c}") for c in np.argsort(-best)[:10]}
            recalls.append(len(truth & set(got)) / 10)
        figures["search_10_cars_p50_ms"] = round(float(np.percentile(search_ms, 50)), 2)
        figures["search_10_cars_p99_ms"] = round(float(np.percentile(search_ms, 99)), 2)
        figures["car_recall_at_10"] = round(float(np.mean(recalls)), 4)

        paged = [
            g[0].car_id
            for offset in range(0, 100, 10)
            for g in index.search_cars(name, queries[0], CarFilter(), 10, offset).groups
        ]
        whole = [g[0].car_id for g in index.search_cars(name, queries[0], CarFilter(), 100).groups]
        figures["pages_10x10_cars_distinct"] = len(set(paged))
        figures["pages_match_one_search_of_100"] = paged == whole
        facets_ms = latencies_ms(
            lambda q: index.listings.facet(name, "make", CarFilter(), MAKES), args.queries
        )
        counted = sum(c for _, c in index.listings.facet(name, "make", CarFilter(), MAKES))
        figures["facet_cars_p50_ms"] = round(float(np.percentile(facets_ms, 50)), 2)
        figures["facet_counts_cars"] = counted == cars
        browse_ms = latencies_ms(
            lambda q: index.listings.page(name, CarFilter(), 100, None), min(50, args.queries)
        )
        figures["browse_100_cars_p50_ms"] = round(float(np.percentile(browse_ms, 50)), 2)

        if args.compare:
            before = new_collection_name(settings.alias, "before")
            index.engine.create(before, DIM, bulk=True)
            _write(index, before, vectors, classes, args.per_car, False)
            old = _folder_bytes(work / "qdrant" / "collections" / before)
            figures["bytes_per_photo_before_cars"] = round(old / len(vectors))
            index.engine.drop(before)

        if args.service:
            state = index.engine.aliases.state(settings.alias)
            index.engine.seal(name)
            index.engine.aliases.move(state, AliasState(settings.alias, name))
            index.close()
            store = ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(work / "data")]
            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGB", (640, 480), (120, 40, 30)).save(buf, "JPEG")
            with (
                Service(store, timeout_s=600) as service,
                httpx.Client(base_url=service.url, timeout=30) as http,  # one connection
            ):
                times = []
                stages: list[dict[str, float]] = []
                for i in range(args.queries // 2 + 10):
                    start = time.perf_counter()
                    r = http.post(
                        "/api/v1/search",
                        files={"image": ("q.jpg", buf.getvalue())},
                        data={"limit": "10"},
                    )
                    r.raise_for_status()
                    if i >= 10:
                        times.append(time.perf_counter() - start)
                        stages.append(r.json()["timings"])
                    if i == 10:
                        hits = r.json()["hits"]
                        figures["service_hits_distinct_cars"] = len({h["id"] for h in hits}) == len(
                            hits
                        )
            figures["service_search_p50_ms"] = round(float(np.percentile(times, 50)) * 1e3, 1)
            for stage in ("decode_ms", "embed_ms", "search_ms"):
                values = [s[stage] for s in stages]
                figures[f"service_{stage}_p50"] = round(float(np.percentile(values, 50)), 1)
        else:
            index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("%s", figures)
    sys.stdout.write(json.dumps(figures) + "\n")  # the machine-readable last line


if __name__ == "__main__":
    main()
