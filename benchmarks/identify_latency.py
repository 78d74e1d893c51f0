"""What identification and one-result-per-model add to a search, on the embedded engine.

    python benchmarks/identify_latency.py [--points 20000] [--queries 300]

Synthetic cars (as `benchmarks/store.py` makes them) in a Qdrant Edge index; for each query
vector, times (p50, in this process): the search of 12 hits alone; the identification from its
60 neighbours (one search of 60 when it has no filter: the three levels' votes, evidence and
absence); a filtered search plus the unfiltered query the vote then needs; and
`group_by=class` (12 groups of up to 3 photos). Target: identification and grouping add
<= 1 ms at p50. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from store import DIM, MAKES, car_payload, synthetic_cars

from app.identification import identification_of
from app.searching import VOTE_FIELDS, api_groups
from carembed.calibration import DEFAULT_ABSENT_PRIOR, LEVELS, AbsenceFit, Calibration
from indexer.density import refresh_densities
from indexer.engines.base import NewPoint
from indexer.index import CarIndex
from indexer.payload import CarFilter, point_id
from indexer.settings import StoreSettings
from indexer.versions import new_collection_name

logger = logging.getLogger("identify_latency")


def _p50_ms(call: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    vectors, classes, queries, query_classes = synthetic_cars(args.points, args.queries, seed=1)
    work = Path(tempfile.mkdtemp(prefix="carsearch-identify-"))
    index = CarIndex.open(StoreSettings(qdrant_path=work / "q", data_dir=work / "d"))
    name = new_collection_name("cars", "bench")
    index.engine.create(name, DIM, bulk=True)
    for lo in range(0, args.points, 256):
        hi = min(args.points, lo + 256)
        points = [
            NewPoint(point_id(f"{i:064x}"), vectors[i], car_payload(i, int(classes[i])))
            for i in range(lo, hi)
        ]
        index.engine.upsert(name, points)
    refresh_densities(index.engine, name)
    index.engine.optimize(name)
    # The three votes and the absence of each level (any fit costs the same).
    absence = AbsenceFit(weights=[-8.0, -10.0, -2.0, -1.0], intercept=6.0)
    calibration = Calibration(absent=dict.fromkeys(LEVELS, absence), density_weight=0.5)
    prior = DEFAULT_ABSENT_PRIOR
    everything = CarFilter()

    def plain(q: int) -> object:
        return index.search(name, queries[q], everything, 12)

    def with_vote(q: int) -> object:
        cars = index.search(name, queries[q], everything, max(12, calibration.fetch))
        return identification_of([cars[: calibration.fetch]], calibration, prior)

    def make_filter(q: int) -> CarFilter:
        return CarFilter(make=f"Make{int(query_classes[q]) % MAKES:02d}")

    def filtered(q: int) -> object:
        return index.search(name, queries[q], make_filter(q), 12)

    def filtered_with_vote(q: int) -> object:
        index.search(name, queries[q], make_filter(q), 12)
        voters = index.search(name, queries[q], everything, calibration.fetch, 0, None, VOTE_FIELDS)
        return identification_of([voters], calibration, prior)

    def grouped(q: int) -> object:  # 12 groups of up to 3, as the page asks for them
        found = index.search_groups(name, queries[q], everything, "class_name", 12, 3, VOTE_FIELDS)
        whole = index.get_many(name, [c.id for g in found.groups for c in g])
        groups = api_groups(found.groups, {c.id: c for c in whole})
        voters = found.nearest or index.search(
            name, queries[q], everything, calibration.fetch, 0, None, VOTE_FIELDS
        )
        return groups, identification_of([voters[: calibration.fetch]], calibration, prior)

    for call in (plain, with_vote, filtered, filtered_with_vote, grouped):  # warm-up
        _p50_ms(call, 20)
    figures = {
        name_: round(_p50_ms(call, args.queries), 3)
        for name_, call in (
            ("search_p50_ms", plain),
            ("search_and_vote_p50_ms", with_vote),
            ("filtered_p50_ms", filtered),
            ("filtered_and_vote_p50_ms", filtered_with_vote),
            ("grouped_p50_ms", grouped),
        )
    }
    index.close()
    figures["identification_adds_ms"] = round(
        figures["search_and_vote_p50_ms"] - figures["search_p50_ms"], 3
    )
    figures["identification_adds_when_filtered_ms"] = round(
        figures["filtered_and_vote_p50_ms"] - figures["filtered_p50_ms"], 3
    )
    figures["grouping_adds_ms"] = round(figures["grouped_p50_ms"] - figures["search_p50_ms"], 3)
    logger.info("%s", figures)
    sys.stdout.write(json.dumps(figures | {"points": args.points}) + "\n")


if __name__ == "__main__":
    main()
