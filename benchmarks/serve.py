"""Service latency, throughput and memory on loopback, with real photos indexed.

    python benchmarks/serve.py ../shared/datasets/stanford-cars-dev [--seconds 20]

1. Indexes the dataset into a temporary embedded store.
2. Starts `carsearch serve` (a subprocess on 127.0.0.1) with micro-batching on, then off.
3. Prints p50/p99 latency of single uploads against one bare forward of the same model in this
   process, QPS at 1, 4 and 16 concurrent clients for both servers, and the server's resident
   memory after N1 and N2 requests. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from service import Service

from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.index import CarIndex
from indexer.settings import StoreSettings

logger = logging.getLogger("serve")


async def _load(
    url: str, uploads: list[bytes], clients: int, requests: int, seconds: float
) -> tuple[list[float], float]:
    """``clients`` concurrent loops, at most ``requests`` in all and ``seconds`` long."""
    latencies: list[float] = []
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            data = uploads[sent % len(uploads)]
            sent += 1
            start = time.perf_counter()
            r = await http.post(
                url + "/api/v1/search", files={"image": ("q.jpg", data)}, data={"limit": "10"}
            )
            r.raise_for_status()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*[worker(http) for _ in range(clients)])
    return latencies, len(latencies) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--seconds", type=float, default=20, help="per QPS measurement")
    parser.add_argument("--memory-requests", type=int, nargs=2, default=(1000, 10000))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="carsearch-serve-"))
    records = read_dataset(args.data).records
    uploads = [r.path.read_bytes() for r in records[:200]]
    embedder = Embedder(build_model(), engine="onnx", onnx_dir=work / "data" / "onnx")
    index = CarIndex.open(StoreSettings(qdrant_path=work / "qdrant"))
    index.build(embedder, args.data, num_workers=1, progress=False)
    index.close()

    one = np.stack([embedder.prepare(records[0].path)])
    embedder.embed_arrays(one)
    forwards = []
    for _ in range(30):
        start = time.perf_counter()
        embedder.embed_arrays(one)
        forwards.append(time.perf_counter() - start)
    bare = float(np.median(forwards))
    logger.info("bare forward (onnx, batch 1, in this process): %.1f ms", 1e3 * bare)

    results: dict[str, dict[int, float]] = {}
    for label, max_batch in (("on", 16), ("off", 1)):
        server = Service(
            ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(work / "data")],
            env={"CARSEARCH_MAX_BATCH": str(max_batch), "CARSEARCH_MAX_WAIT_MS": "2"},
        )
        try:
            if label == "on":
                latencies, _ = asyncio.run(_load(server.url, uploads, 1, 200, args.seconds))
                p50, p99 = np.percentile(latencies, [50, 99])
                logger.info(
                    "single uploads: p50 %.1f ms, p99 %.1f ms; p50 / bare forward = %.2fx",
                    1e3 * p50,
                    1e3 * p99,
                    p50 / bare,
                )
            results[label] = {}
            for clients in (1, 4, 16):
                _, qps = asyncio.run(_load(server.url, uploads, clients, 100_000, args.seconds))
                results[label][clients] = qps
            if label == "on":
                first, second = args.memory_requests
                asyncio.run(_load(server.url, uploads, 16, first, 600))
                rss_first = server.rss_mb()
                asyncio.run(_load(server.url, uploads, 16, second - first, 900))
                rss_second = server.rss_mb()
                logger.info(
                    "resident memory: %.0f MB after %d requests, %.0f MB after %d",
                    rss_first,
                    first,
                    rss_second,
                    second,
                )
        finally:
            server.stop()
    logger.info("| clients | QPS batching on | QPS batching off | on / off |")
    logger.info("|---|---|---|---|")
    for clients in (1, 4, 16):
        on, off = results["on"][clients], results["off"][clients]
        logger.info("| %d | %.1f | %.1f | %.2fx |", clients, on, off, on / off)


if __name__ == "__main__":
    main()
