"""The listing API's index work at scale: facets, a price-filtered search, a refined search and
a walk of every car through the browse cursor.

    python benchmarks/listing.py --points 100000 [--engine edge|server] [--queries 200]

100,000 synthetic cars as ``benchmarks/store.py`` makes them (1280-d vectors clustered around
196 car models), each with 4 declared attributes (price float, mileage integer, color keyword,
available bool). Figures are in the engine (``CarIndex`` calls, no HTTP). Targets: facets p50
<= 20 ms, price-range search p50 <= 10 ms, refined search (3 positives, 2 negatives) p50 <=
10 ms, and the walk returns each id once. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from store import DIM, car_payload, latencies_ms, synthetic_cars

from indexer.engines.base import NewPoint
from indexer.index import CarIndex
from indexer.payload import CarFilter, point_id
from indexer.settings import StoreSettings
from indexer.versions import AliasState, new_collection_name

logger = logging.getLogger("listing")
ATTRIBUTES = "price:float,mileage:integer,color:keyword,available:bool"
COLOURS = ("red", "black", "white", "silver", "blue", "green", "grey", "yellow")


def _settings(engine: str, work: Path) -> StoreSettings:
    if engine == "edge":
        return StoreSettings(
            qdrant_path=work / "qdrant",
            data_dir=work / "data",
            alias="bench",
            attributes=ATTRIBUTES,
        )
    return StoreSettings(
        qdrant_url=os.environ["QDRANT_URL"],
        data_dir=work / "data",
        qdrant_api_key=os.environ.get("QDRANT_API_KEY"),
        alias="bench",
        attributes=ATTRIBUTES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--engine", choices=["edge", "server"], default=None)
    parser.add_argument("--page", type=int, default=1000, help="cars per browse page")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = args.engine or ("server" if os.environ.get("QDRANT_URL") else "edge")

    vectors, classes, queries, _ = synthetic_cars(args.points, args.queries, 0)
    rng = np.random.default_rng(1)
    prices = rng.uniform(1000, 60000, args.points).round(-2)
    work = Path(tempfile.mkdtemp(prefix="carsearch-listing-"))
    index = CarIndex.open(_settings(backend, work))
    engine = index.engine
    name = new_collection_name("bench", "bench")
    engine.create(name, DIM, bulk=True)
    ids = [point_id(f"{i:064x}") for i in range(args.points)]
    try:
        for lo in range(0, args.points, 512):
            batch = []
            for i in range(lo, min(args.points, lo + 512)):
                payload = car_payload(i, int(classes[i]))
                payload.attributes = {
                    "price": float(prices[i]),
                    "mileage": int(rng.integers(0, 300_000)),
                    "color": COLOURS[i % len(COLOURS)],
                    "available": bool(i % 3),
                }
                batch.append(NewPoint(ids[i], vectors[i], payload))
            engine.upsert(name, batch)
        engine.seal(name)
        engine.aliases.move(AliasState("bench"), AliasState("bench", name))
        logger.info("%d cars written and indexed", args.points)

        fields = index.fields
        cheap = CarFilter(where=fields.parse_filter({"price": {"gte": 5000, "lte": 20000}}))
        red = CarFilter(where=fields.parse_filter({"color": ["red", "black"], "available": True}))
        examples = rng.integers(0, args.points, (args.queries, 5))

        def facet(q: int) -> None:
            index.listings.facet(
                name, ("make", "color", "body")[q % 3], red if q % 2 else CarFilter(), 50
            )

        def priced(q: int) -> None:
            index.search(name, queries[q], cheap, 10)

        def refined(q: int) -> None:
            picked = [ids[i] for i in examples[q]]
            query = index.listings.refinement(name, [queries[q]], picked[:2], picked[3:])
            index.search(name, query, CarFilter(exclude_ids=frozenset(picked)), 10)

        latencies_ms(priced, 20)  # warm-up
        facet_ms = latencies_ms(facet, args.queries)
        priced_ms = latencies_ms(priced, args.queries)
        refined_ms = latencies_ms(refined, args.queries)
        matches = int(((prices >= 5000) & (prices <= 20000)).sum())

        start = time.perf_counter()
        walked: list[str] = []
        cursor = None
        while True:
            cars, cursor = index.listings.page(name, CarFilter(), args.page, cursor)
            walked += [c.id for c in cars]
            if cursor is None:
                break
        walk_s = time.perf_counter() - start
    finally:
        engine.aliases.move(AliasState("bench", name), AliasState("bench"))
        engine.drop(name)
        index.close()

    def p50(ms: np.ndarray) -> float:
        return round(float(np.percentile(ms, 50)), 2)

    figures = {
        "engine": backend,
        "points": args.points,
        "facet_p50_ms": p50(facet_ms),
        "facet_p99_ms": round(float(np.percentile(facet_ms, 99)), 2),
        "price_filtered_p50_ms": p50(priced_ms),
        "price_filter_matches": matches,
        "refined_p50_ms": p50(refined_ms),
        "walk_s": round(walk_s, 2),
        "walk_ids": len(walked),
        "walk_each_id_once": len(walked) == len(set(walked)) == args.points,
    }
    logger.info(
        "%s, %d cars: facets p50 %.2f ms, price-range search p50 %.2f ms, refined search p50 "
        "%.2f ms, walk of %d ids in %.1f s (each once: %s)",
        backend,
        args.points,
        figures["facet_p50_ms"],
        figures["price_filtered_p50_ms"],
        figures["refined_p50_ms"],
        len(walked),
        walk_s,
        figures["walk_each_id_once"],
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
