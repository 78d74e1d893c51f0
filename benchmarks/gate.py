"""The rollout quality gate on a real gallery: its verdict and cost for each move of the alias
from one model to the next.

    python benchmarks/gate.py ../shared/datasets/stanford-cars-dev zero-shot /tmp/m-default \\
        zero-shot /tmp/m-1epoch [--work DIR] [--gate-photos 2000]

Builds the gallery's index with the first model (no gate), then with each next model in turn
with the gate on (``--force`` after a refusal, so that the next step starts from the model just
judged, as an operator would after inspecting it): each step prints the gate's verdict, its
sample, both models' scores and the seconds judging took. Collections of a model built before
are kept in ``--work`` and their vectors reused. The last line printed is one JSON list.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from carembed.artifact import load_or_default
from carembed.embedder import Embedder
from indexer.gate import GatePolicy, GateRefused
from indexer.index import CarIndex
from indexer.settings import StoreSettings

logger = logging.getLogger("gate")


def _embedder(name: str, work: Path) -> Embedder:
    model = load_or_default(None if name == "shipped" else Path(name))
    return Embedder(model, engine="onnx", onnx_dir=work / "onnx", int8=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gallery", type=Path)
    parser.add_argument("models", nargs="+", help="model folders, zero-shot or shipped")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--gate-photos", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="carsearch-gate-"))
    settings = StoreSettings(qdrant_path=work / "qdrant", data_dir=work / "data")
    index = CarIndex.open(settings)
    steps: list[dict[str, Any]] = []
    try:
        first = _embedder(args.models[0], work)
        started = time.perf_counter()
        index.build(first, args.gallery, progress=False)
        logger.info("%s: built in %.0f s", args.models[0], time.perf_counter() - started)
        for before, name in zip(args.models, args.models[1:], strict=False):
            embedder = _embedder(name, work)
            policy = GatePolicy(photos=args.gate_photos)
            started = time.perf_counter()
            try:
                index.build(embedder, args.gallery, progress=False, gate=policy)
                verdict = index.status().live_gate
            except GateRefused as refused:
                verdict = refused.verdict.record()
                forced = GatePolicy(photos=args.gate_photos, force=True)
                index.build(embedder, args.gallery, progress=False, gate=forced)
            assert verdict is not None
            step = {"from": before, "to": name, "build_s": round(time.perf_counter() - started)}
            steps.append(step | verdict)
            logger.info(
                "%s -> %s: %s, %d photos of %d classes, R-Precision %s -> %s, gate %.1f s",
                before,
                name,
                "passed" if verdict["passed"] else "refused",
                verdict["photos"],
                verdict["classes"],
                (verdict["live_scores"] or {}).get("r_precision"),
                (verdict["new_scores"] or {}).get("r_precision"),
                verdict["seconds"],
            )
    finally:
        index.close()
    sys.stdout.write(json.dumps(steps) + "\n")


if __name__ == "__main__":
    main()
