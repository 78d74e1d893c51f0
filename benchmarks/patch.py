"""What an edit (PATCH /api/v1/cars/{id}) costs in the index as edited cars pile up.

    python benchmarks/patch.py [--edited 1000 100000] [--patches 200]

For each count: an embedded store with 500 cars (synthetic vectors), a ledger holding that many
cars' edit records, then `--patches` edits of random cars through the index (what the PATCH
route calls: the ledger's record and every joined collection). Prints p50 and p95 in ms per
count; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from indexer.engines.base import NewPoint
from indexer.index import CarIndex
from indexer.payload import CarFields, gallery_payload, point_id
from indexer.settings import StoreSettings
from indexer.versions import new_collection_name

logger = logging.getLogger("patch")
VERSION = "efficientnetlite0-identity-000000000000-f32"
CARS, DIM = 500, 64


def _index(root: Path, edited: int) -> tuple[CarIndex, list[str]]:
    index = CarIndex.open(StoreSettings(qdrant_path=root / "q", data_dir=root / "d"))
    live = new_collection_name(index.alias, VERSION)
    index.engine.create(live, DIM)
    state = index.state()
    index.engine.aliases.move(state, state.promoted(live))
    rng = np.random.default_rng(0)
    ids, points = [], []
    for i in range(CARS):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        car = point_id(sha)  # a car of one photo
        fields = CarFields(make="Audi").car_fields() | {"car_id": car}
        payload = gallery_payload(fields, sha, (1, 1), VERSION)
        vector = rng.normal(size=DIM).astype(np.float32)
        unit = vector / np.linalg.norm(vector)
        point = NewPoint(car, unit, payload)
        points.append(point)
        ids.append(point.id)
    index.engine.upsert(live, points)
    edits = index.ledger.edits_dir
    edits.mkdir(parents=True, exist_ok=True)
    for _ in range(edited):  # other cars' edit records
        (edits / f"{uuid.uuid4()}.json").write_text('{"year": 2000}')
    index.served.join_all(None)
    return index, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edited", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--patches", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = {}
    for edited in args.edited:
        with tempfile.TemporaryDirectory(prefix="carsearch-patch-") as work:
            index, ids = _index(Path(work), edited)
            rng = np.random.default_rng(1)
            times = []
            for n in range(args.patches):
                car = ids[int(rng.integers(len(ids)))]
                started = time.perf_counter()
                assert index.listings.edit(car, {"year": 1990 + n % 40}) is not None
                times.append((time.perf_counter() - started) * 1000)
            index.close()
        times.sort()
        figures[str(edited)] = {
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * len(times))], 2),
        }
        logging.getLogger("patch").warning(
            "%d edited cars: PATCH p50 %.2f ms, p95 %.2f ms",
            edited,
            figures[str(edited)]["p50_ms"],
            figures[str(edited)]["p95_ms"],
        )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
