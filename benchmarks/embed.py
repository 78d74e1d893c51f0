"""Embedding speed per backbone and engine, with the machine's matmul rate as the yardstick.

    python benchmarks/embed.py ../shared/datasets/stanford-cars-dev [--images 256]
        [--models DIR ...] [--engines torch onnx auto]

For each backbone (or each trained model folder of ``--models``) and engine (torch eager, ONNX
Runtime float32, ``auto``: the int8 graph where the model has one that passed the gate):
images/s of decode + preprocess alone, of the forward pass alone (batch 32), and end to end
(decode in one worker process + forward), and the share of the measured float32 matmul rate
that the forward pass reaches.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from carembed.artifact import load_model
from carembed.backbones import OFFLINE
from carembed.datasets import read_dataset
from carembed.embedder import Embedder
from carembed.model import build_model

logger = logging.getLogger("embed")


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops(embedder: Embedder) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    size = embedder.preprocessing.size
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        embedder.model.cpu()(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--backbones", nargs="+", default=sorted(OFFLINE))
    parser.add_argument("--engines", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--models", nargs="+", type=Path, default=[], help="model folders")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    paths = [r.path for r in read_dataset(args.data).records[: args.images]]
    gflops = matmul_gflops()
    logger.info(
        "float32 2048x2048 matmul: %.1f GFLOP/s on %d threads", gflops, torch.get_num_threads()
    )
    rows = []
    onnx_dir = Path(tempfile.mkdtemp(prefix="carsearch-onnx-"))
    models = (
        [(str(folder), load_model(folder)) for folder in args.models]
        if args.models
        else [(name, build_model(name)) for name in args.backbones]
    )
    for name, model in models:
        for engine in args.engines:
            embedder = Embedder(model, engine=engine, onnx_dir=onnx_dir)
            engine = embedder.backend if engine == "auto" else engine
            start = time.perf_counter()
            arrays = np.stack([embedder.prepare(p) for p in paths])
            decode = len(paths) / (time.perf_counter() - start)
            embedder.embed_arrays(arrays[:32])  # warm-up
            start = time.perf_counter()
            embedder.embed_arrays(arrays)
            forward = len(paths) / (time.perf_counter() - start)
            start = time.perf_counter()
            done = sum(len(b.indices) for b in embedder.embed_files(paths, args.workers))
            end_to_end = done / (time.perf_counter() - start)
            share = forward * forward_flops(embedder) / (gflops * 1e9)
            rows.append((name, engine, decode, forward, end_to_end, share))
    logger.info(
        "| model | engine | decode+preprocess img/s | forward img/s | "
        "end to end img/s | end to end / forward | forward share of matmul rate |"
    )
    logger.info("|---|---|---|---|---|---|---|")
    for name, engine, decode, forward, e2e, share in rows:
        logger.info(
            "| %s | %s | %.1f | %.1f | %.1f | %.0f%% | %.0f%% |",
            name,
            engine,
            decode,
            forward,
            e2e,
            100 * e2e / forward,
            100 * share,
        )


if __name__ == "__main__":
    main()
