"""Indexing speed into the embedded store (Qdrant Edge, HNSW built before the alias moves)
against pure embedding of the same images.

    python benchmarks/index.py ../shared/datasets/stanford-cars-dev [--engine onnx]

Prints: images/s and total time of a full build; the time of embedding the same images with
no store (target: indexing <= 1.2x that); a full re-run with nothing changed and an
incremental re-run (target: < 10% of the first run).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.index import CarIndex
from indexer.settings import StoreSettings

logger = logging.getLogger("index")
T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gallery", type=Path)
    parser.add_argument("--engine", choices=["torch", "onnx"], default="onnx")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    work = Path(tempfile.mkdtemp(prefix="carsearch-bench-"))
    embedder = Embedder(build_model(), engine=args.engine, onnx_dir=work / "onnx")
    paths = [r.path for r in read_dataset(args.gallery).records]

    embedded, pure = timed(
        lambda: sum(len(b.indices) for b in embedder.embed_files(paths, args.workers))
    )

    index = CarIndex.open(StoreSettings(qdrant_path=work / "qdrant"))
    common: dict[str, Any] = {"num_workers": args.workers, "progress": False}
    first, index_time = timed(lambda: index.build(embedder, args.gallery, **common))
    rerun, rerun_time = timed(lambda: index.build(embedder, args.gallery, **common))
    incremental, incremental_time = timed(lambda: index.update(embedder, args.gallery, **common))
    index.close()

    logger.info("engine %s, %d images", args.engine, len(paths))
    logger.info("pure embedding: %d images in %.1f s = %.1f img/s", embedded, pure, embedded / pure)
    logger.info(
        "full build: %d points in %.1f s = %.1f img/s (%.2fx pure embedding)",
        first.total_points,
        index_time,
        first.indexed / index_time,
        index_time / pure,
    )
    logger.info(
        "full re-run, nothing changed: %.1f s (%.1f%% of the first), embedded %d",
        rerun_time,
        100 * rerun_time / index_time,
        rerun.indexed,
    )
    logger.info(
        "incremental re-run, nothing changed: %.1f s (%.1f%% of the first), embedded %d",
        incremental_time,
        100 * incremental_time / index_time,
        incremental.indexed,
    )


if __name__ == "__main__":
    main()
