"""The car index's engine on its own: insert, HNSW build, search latency and recall.

    python benchmarks/store.py --points 100000 [--engine edge|server] [--queries 200]

Synthetic but shaped like the real thing: unit vectors of the default model's dimension (1280)
clustered around 196 car models (as many as Stanford Cars has), payloads like real cars (make,
model, year, body, class name, source), written through ``CarIndex``'s engine in batches as a
build writes them. Queries are fresh vectors from the same clusters; the oracle is the exact
cosine top 10 over all points (numpy). Filtered queries ask for the query's make.

The server engine runs when ``--engine server`` (or ``QDRANT_URL`` is set and no engine is
named), at ``QDRANT_URL``. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexer.engines.base import NewPoint
from indexer.index import CarIndex
from indexer.payload import CarFilter, CarPayload, point_id
from indexer.settings import StoreSettings
from indexer.versions import new_collection_name

logger = logging.getLogger("store")
DIM = 1280
CLASSES = 196
MAKES = 49
BODIES = ("Sedan", "SUV", "Coupe", "Convertible", "Hatchback", "Pickup", "Van", "Wagon")


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return unit


def synthetic_cars(
    points: int, queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, their class, query vectors, the queries' class)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, DIM)).astype(np.float32)
    classes = rng.integers(0, CLASSES, points)
    noise = 1.2  # cosine to the class centre about 0.6: neighbours of a class are close, not equal
    vectors = np.empty((points, DIM), np.float32)
    for start in range(0, points, 10_000):
        end = min(points, start + 10_000)
        part = centres[classes[start:end]] + noise * rng.standard_normal((end - start, DIM))
        vectors[start:end] = _unit(part.astype(np.float32))
    query_classes = rng.integers(0, CLASSES, queries)
    query_vectors = _unit(
        centres[query_classes] + noise * rng.standard_normal((queries, DIM)).astype(np.float32)
    )
    return vectors, classes, query_vectors, query_classes


def car_payload(i: int, cls: int) -> CarPayload:
    """The payload of the car of one photo ``i`` (its point id: ``point_id(f"{i:064x}")``)."""
    make = f"Make{cls % MAKES:02d}"
    return CarPayload(
        car_id=point_id(f"{i:064x}"),
        cover=True,
        make=make,
        model=f"Model{cls:03d}",
        year=1995 + cls % 18,
        body=BODIES[cls % len(BODIES)],
        class_name=f"{make} Model{cls:03d} {1995 + cls % 18}",
        path=f"class{cls:03d}/{i:07d}.jpg",
        sha256=f"{i:064x}",
        width=640,
        height=480,
        model_version="bench",
        indexed_at="2026-11-29T00:00:00+00:00",
        source="gallery",
    )


def latencies_ms(call: Callable[[int], object], n: int) -> np.ndarray:
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--engine", choices=["edge", "server"], default=None)
    parser.add_argument("--batch", type=int, default=256, help="points per write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = args.engine or ("server" if os.environ.get("QDRANT_URL") else "edge")

    vectors, classes, queries, query_classes = synthetic_cars(args.points, args.queries, args.seed)
    work = Path(tempfile.mkdtemp(prefix="carsearch-store-"))
    if backend == "edge":
        settings = StoreSettings(qdrant_path=work / "qdrant", alias="bench")
    else:
        settings = StoreSettings(
            qdrant_url=os.environ["QDRANT_URL"],
            qdrant_api_key=os.environ.get("QDRANT_API_KEY"),
            alias="bench",
        )
    index = CarIndex.open(settings)
    engine = index.engine
    name = new_collection_name("bench", "bench")
    engine.create(name, DIM, bulk=True)  # as a full build creates it
    try:
        batches = [
            [
                NewPoint(point_id(f"{i:064x}"), vectors[i], car_payload(i, int(classes[i])))
                for i in range(lo, min(args.points, lo + args.batch))
            ]
            for lo in range(0, args.points, args.batch)
        ]
        start = time.perf_counter()  # the engine's part of a build's writes
        for batch in batches:
            engine.upsert(name, batch)
        insert_s = time.perf_counter() - start
        logger.info("inserted %d points in %.1f s", args.points, insert_s)
        start = time.perf_counter()
        engine.optimize(name)
        hnsw_s = time.perf_counter() - start
        logger.info("HNSW and payload indexes built in %.1f s", hnsw_s)

        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        ids = [point_id(f"{i:064x}") for i in range(args.points)]
        found: list[list[str]] = []

        def plain(q: int) -> None:
            found.append([c.id for c in index.search(name, queries[q], CarFilter(), 10)])

        def filtered(q: int) -> None:
            make = f"Make{int(query_classes[q]) % MAKES:02d}"
            index.search(name, queries[q], CarFilter(make=make), 10)

        latencies_ms(plain, min(20, args.queries))  # warm-up: caches, page faults
        found.clear()
        query_ms = latencies_ms(plain, args.queries)
        filtered_ms = latencies_ms(filtered, args.queries)
        recall = float(
            np.mean([len(set(f) & {ids[i] for i in exact[q]}) / 10 for q, f in enumerate(found)])
        )
    finally:
        engine.drop(name)
        index.close()
    figures = {
        "engine": backend,
        "points": args.points,
        "dim": DIM,
        "insert_per_s": round(args.points / insert_s, 1),
        "hnsw_build_s": round(hnsw_s, 2),
        "query_p50_ms": round(float(np.percentile(query_ms, 50)), 2),
        "query_p99_ms": round(float(np.percentile(query_ms, 99)), 2),
        "filtered_p50_ms": round(float(np.percentile(filtered_ms, 50)), 2),
        "filtered_p99_ms": round(float(np.percentile(filtered_ms, 99)), 2),
        "recall_at_10": round(recall, 4),
    }
    logger.info(
        "%s, %d points: insert %.0f pts/s, HNSW %.1f s, query p50 %.2f ms / p99 %.2f ms, "
        "filtered p50 %.2f ms, recall@10 %.3f",
        backend,
        args.points,
        figures["insert_per_s"],
        hnsw_s,
        figures["query_p50_ms"],
        figures["query_p99_ms"],
        figures["filtered_p50_ms"],
        recall,
    )
    sys.stdout.write(json.dumps(figures) + "\n")  # the machine-readable last line


if __name__ == "__main__":
    main()
