"""Service throughput, latency and memory against its own engine and a naive server.

    python benchmarks/serve.py ../shared/datasets/stanford-cars-dev [--seconds 20]
        [--baseline naive|none] [--also-max-batch N] [--model M]

1. Indexes the dataset into a temporary embedded store (float32 ONNX, the default model or
   ``--model``), and runs the int8 quality gate on its photos as the service does on its first
   start (``--float32``: not).
2. Measures the bare engines in this process: one batch-1 forward of the float32 ONNX graph
   (and of the int8 graph when the service would run it), as photos per second.
3. Starts ``carsearch serve`` (a subprocess on 127.0.0.1, its default settings): single-upload
   p50/p99, QPS at 1, 4 and 16 concurrent clients, resident memory after N1 and N2 requests.
4. ``--baseline naive`` (the default) starts ``benchmarks/naive_server.py`` over the same
   gallery vectors and loads it the same way; ``--also-max-batch N`` also runs carsearch with
   ``CARSEARCH_MAX_BATCH=N``.
5. Prints one table with the ratios the serving targets are stated in. Every loop is bounded
   in count and time; the load generator shares the machine's cores with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from service import Service

from app.int8 import check_photos
from carembed.artifact import load_or_default
from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.quantize import check_int8
from indexer.index import CarIndex
from indexer.settings import StoreSettings

logger = logging.getLogger("serve")
CLIENTS = (1, 4, 16)


@dataclass
class Figures:
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    qps: dict[int, float] = field(default_factory=dict)
    p50_ms_at: dict[int, float] = field(default_factory=dict)
    cpu_ms: dict[int, float] = field(default_factory=dict)  # server CPU per request


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
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*[worker(http) for _ in range(clients)])
    return latencies, len(latencies) / (time.perf_counter() - start)


def _measure(server: Service, uploads: list[bytes], seconds: float) -> Figures:
    figures = Figures()
    asyncio.run(_load(server.url, uploads, 4, 40, 30))  # warm-up
    latencies, _ = asyncio.run(_load(server.url, uploads, 1, 300, seconds))
    figures.p50_ms, figures.p99_ms = (1e3 * v for v in np.percentile(latencies, [50, 99]))
    for clients in CLIENTS:
        cpu = server.cpu_seconds()
        latencies, qps = asyncio.run(_load(server.url, uploads, clients, 100_000, seconds))
        figures.cpu_ms[clients] = 1e3 * (server.cpu_seconds() - cpu) / len(latencies)
        figures.qps[clients] = qps
        figures.p50_ms_at[clients] = 1e3 * float(np.median(latencies))
    return figures


def _bare_batch1(embedder: Embedder, one: np.ndarray, repeats: int = 60) -> float:
    """Median seconds of one batch-1 forward."""
    for _ in range(5):
        embedder.embed_arrays(one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed_arrays(one)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _gallery_files(index: CarIndex, work: Path) -> list[str]:
    """The indexed vectors and payloads, as files for the naive server."""
    collection = index.state().live
    assert collection is not None
    ids = [car_id for car_id, _ in index.engine.scroll(collection, None)]
    cars = index.engine.retrieve(collection, ids, with_vectors=True)
    np.save(work / "vectors.npy", np.asarray([c.vector for c in cars], dtype=np.float32))
    payloads = [c.payload.model_dump(mode="json") | {"id": c.id} for c in cars]
    (work / "payloads.json").write_text(json.dumps(payloads))
    return ["--vectors", str(work / "vectors.npy"), "--payloads", str(work / "payloads.json")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--seconds", type=float, default=20, help="per QPS measurement")
    parser.add_argument("--baseline", choices=("naive", "none"), default="naive")
    parser.add_argument(
        "--float32", action="store_true", help="no int8 gate: the service runs float32"
    )
    parser.add_argument("--also-max-batch", type=int, default=0, help="another carsearch run")
    parser.add_argument(
        "--memory-requests",
        type=int,
        nargs=2,
        default=(1000, 10000),
        help="resident memory after N1 and N2 requests (0 0: skip)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="carsearch-serve-"))
    onnx_dir = work / "data" / "onnx"
    records = read_dataset(args.data).records
    uploads = [r.path.read_bytes() for r in records[:200]]
    model = load_or_default(args.model)
    fp32 = Embedder(model, engine="onnx", onnx_dir=onnx_dir)
    if not args.float32 and model.source_dir is None:  # as the service on its first start
        scored, calibration = check_photos(records)
        check_int8(model, onnx_dir, scored, calibration, f"{len(scored)} gallery photos")
    # The gallery is indexed with the vectors the service makes (its embedding version).
    auto = Embedder(model, engine="auto", onnx_dir=onnx_dir, int8=not args.float32)
    index = CarIndex.open(StoreSettings(qdrant_path=work / "qdrant", data_dir=work / "data"))
    index.build(auto, args.data, num_workers=1, progress=False)
    naive_args = _gallery_files(index, work) if args.baseline == "naive" else []
    index.close()

    one = np.stack([fp32.prepare(records[0].path)])
    bare = {"fp32": _bare_batch1(fp32, one)}
    service_env = {"CARSEARCH_INT8": "false" if args.float32 else "true"}  # graphs: its data dir
    if args.model is not None:
        service_env["CARSEARCH_MODEL_DIR"] = str(args.model)
    if auto.backend == "onnx-int8":
        bare["int8"] = _bare_batch1(auto, one)
    for name, seconds in bare.items():
        logger.info(
            "bare %s ONNX forward, batch 1, in this process: %.2f ms = %.0f photos/s",
            name,
            1e3 * seconds,
            1 / seconds,
        )
    logger.info("the service runs the %s engine", auto.backend)

    store_args = ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(work / "data")]
    runs: dict[str, Figures] = {}
    server = Service(store_args, env=service_env)
    try:
        runs["carsearch"] = _measure(server, uploads, args.seconds)
        first, second = args.memory_requests
        if second:
            asyncio.run(_load(server.url, uploads, 16, first, 900))
            rss_first = server.rss_mb()
            asyncio.run(_load(server.url, uploads, 16, second - first, 1800))
            rss_second = server.rss_mb()
    finally:
        server.stop()
    if args.also_max_batch:
        env = service_env | {"CARSEARCH_MAX_BATCH": str(args.also_max_batch)}
        with Service(store_args, env=env) as server:
            runs[f"carsearch, max batch {args.also_max_batch}"] = _measure(
                server, uploads, args.seconds
            )
    if args.baseline == "naive":
        command = [sys.executable, str(Path(__file__).parent / "naive_server.py")]
        model_args = [] if args.model is None else ["--model", str(args.model)]
        with Service(naive_args + model_args, command=command) as server:
            runs["naive"] = _measure(server, uploads, args.seconds)

    rate = 1 / bare["fp32"]
    ours = runs["carsearch"]
    logger.info("")
    logger.info("| server | p50 1 client | " + " | ".join(f"QPS {c}" for c in CLIENTS) + " |")
    logger.info("|---|---|" + "---|" * len(CLIENTS))
    for name, fig in runs.items():
        qps = " | ".join(
            f"{fig.qps[c]:.1f} (p50 {fig.p50_ms_at[c]:.0f} ms, CPU {fig.cpu_ms[c]:.1f} ms/req)"
            for c in CLIENTS
        )
        logger.info("| %s | %.1f ms | %s |", name, fig.p50_ms, qps)
    logger.info("")
    logger.info("single-client p50 %.1f ms (p99 %.1f ms)", ours.p50_ms, ours.p99_ms)
    logger.info(
        "  / bare fp32 forward %.2f ms = %.2fx (target <= 2x)",
        1e3 * bare["fp32"],
        ours.p50_ms / (1e3 * bare["fp32"]),
    )
    logger.info(
        "16 clients: %.1f QPS = %.0f%% of the bare fp32 batch-1 rate %.0f/s (target >= 60%%)",
        ours.qps[16],
        100 * ours.qps[16] / rate,
        rate,
    )
    if "naive" in runs:
        for clients in CLIENTS:
            logger.info(
                "%2d clients: %.2fx the naive server's QPS%s",
                clients,
                ours.qps[clients] / runs["naive"].qps[clients],
                " (target >= 4x)" if clients == 16 else "",
            )
    if second:
        logger.info(
            "resident memory: %.0f MB after %d requests, %.0f MB after %d (%+.1f%%)",
            rss_first,
            first,
            rss_second,
            second,
            100 * (rss_second / rss_first - 1),
        )


if __name__ == "__main__":
    main()
