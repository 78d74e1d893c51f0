"""Zero-shot retrieval quality and speed of each offline backbone: picks the default.

    python benchmarks/zero_shot.py ../shared/datasets/stanford-cars-dev [--split val]

Every image of the split is a query against all the others (exact, cosine, self excluded).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from carembed.backbones import OFFLINE
from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.metrics import retrieval_metrics
from carembed.model import build_model

logger = logging.getLogger("zero_shot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--backbones", nargs="+", default=sorted(OFFLINE))
    parser.add_argument("--pooling", choices=["avg", "gem"], default="avg")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    dataset = read_dataset(args.data).split(args.split)
    paths = [r.path for r in dataset.records]
    names = [r.class_name for r in dataset.records]
    logger.info("%d images, %d classes (%s split)", len(paths), len(set(names)), args.split)
    rows = []
    for name in args.backbones:
        embedder = Embedder(build_model(name, pooling=args.pooling))
        start = time.perf_counter()
        vectors, kept, _ = embedder.embed_all(paths, num_workers=args.workers, progress=name)
        seconds = time.perf_counter() - start
        _, labels = np.unique([names[i] for i in kept], return_inverse=True)
        metrics = retrieval_metrics(vectors, labels)
        rows.append((name, metrics, len(kept) / seconds))
    logger.info("| backbone | R-Precision | Recall@1 | MAP@R | end-to-end img/s |")
    logger.info("|---|---|---|---|---|")
    for name, m, rate in rows:
        logger.info(
            "| %s | %.3f | %.3f | %.3f | %.1f |",
            name,
            m["r_precision"],
            m["recall_at_1"],
            m["map_at_r"],
            rate,
        )


if __name__ == "__main__":
    main()
