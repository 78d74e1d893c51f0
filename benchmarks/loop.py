"""The README's retraining loop beside a running service under load, as an operator runs it.

    python benchmarks/loop.py ../shared/datasets/stanford-cars-dev [--clients 16 --writers 2]

1. Indexes the gallery with the live model (`--live`, default the zero-shot model: a model that
   trained on none of the gallery, so the gate can judge every photo) into a temporary embedded
   store and starts `carsearch serve` on it.
2. `--clients` clients search and `--writers` clients add, edit (PATCH) and delete their own
   cars (mirrored gallery photos: new bytes) for the whole run; every acknowledged write is
   remembered.
3. Runs the loop's commands, each in its own process: `export-dataset` (what `train
   --from-index` exports first; training itself is left out: `--model` is the retrained
   model, default the zero-shot backbone with GeM pooling), `index --gallery G --model NEW`
   with the gate on (`--gate-photos` covers the gallery; `--force` again when it refuses),
   `index status`, `index rollback`, `model list`.
4. Prints queries answered and failed, writes acknowledged and lost (a car added and not
   found, a deleted car back, an edit reverted), the switch times, the gate's verdict and time.
The last line is one JSON object. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from service import Service, mirrored

from carembed.artifact import save_model
from carembed.datasets import read_dataset
from carembed.model import build_model

logger = logging.getLogger("loop")
KEY = "loop-benchmark"
HEADERS = {"X-API-Key": KEY}
DELETED = "deleted"


def _carsearch(store: list[str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "carsearch", *args, *store],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return run.returncode, run.stdout + run.stderr, time.monotonic() - started


async def _searches(url: str, photos: list[bytes], stop: asyncio.Event) -> tuple[int, int]:
    ok = failed = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for i in range(10_000_000):
            if stop.is_set():
                break
            try:
                r = await http.post(
                    "/api/v1/search", files={"image": ("q.jpg", photos[i % len(photos)])}
                )
                ok, failed = (ok + 1, failed) if r.status_code == 200 else (ok, failed + 1)
            except httpx.HTTPError:
                failed += 1
    return ok, failed


async def _writes(
    url: str, photos: list[bytes], seed: int, stop: asyncio.Event, oracle: dict[str, Any]
) -> int:
    """Adds, edits and deletes this writer's own cars until ``stop``; every acknowledged
    write goes into ``oracle`` (car id -> its last fields, or DELETED). Returns the failures."""
    rng, failed, mine = random.Random(seed), 0, list[str]()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for _ in range(1_000_000):
            if stop.is_set():
                break
            alive = [c for c in mine if oracle[c] != DELETED]
            roll = rng.random()
            try:
                if photos and (roll < 0.4 or not alive):
                    r = await http.post(
                        "/api/v1/cars",
                        files={"image": ("c.jpg", photos.pop())},
                        headers=HEADERS,
                    )
                    if r.status_code == 201:
                        car = r.json()["id"]
                        mine.append(car)
                        oracle[car] = {"year": None}
                    else:
                        failed += 1
                elif alive and roll < 0.85:
                    car, year = rng.choice(alive), rng.randrange(1990, 2030)
                    r = await http.patch(
                        f"/api/v1/cars/{car}",
                        json={"year": year},
                        headers=HEADERS | {"Content-Type": "application/merge-patch+json"},
                    )
                    if r.status_code == 200:
                        oracle[car] = {"year": year}
                    else:
                        failed += 1
                elif len(alive) > 3:
                    car = rng.choice(alive)
                    r = await http.delete(f"/api/v1/cars/{car}", headers=HEADERS)
                    if r.status_code == 204:
                        oracle[car] = DELETED
                    else:
                        failed += 1
                else:
                    await asyncio.sleep(0.05)
            except httpx.HTTPError:
                failed += 1
    return failed


async def _lost(url: str, oracle: dict[str, Any]) -> dict[str, int]:
    lost = {"added_missing": 0, "deleted_back": 0, "edit_reverted": 0}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for car, state in oracle.items():
            r = await http.get(f"/api/v1/cars/{car}")
            if state == DELETED:
                lost["deleted_back"] += r.status_code != 404
            elif r.status_code != 200:
                lost["added_missing"] += 1
            elif r.json()["year"] != state["year"]:
                lost["edit_reverted"] += 1
    return lost


async def _switch(url: str, collection: str | None, since: float) -> float:
    """Seconds from ``since`` until the service reads from another collection than
    ``collection`` (bounded)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() - since < 300:
            body = (await http.get("/readyz")).json()
            if body.get("collection") != collection and body.get("ready"):
                return time.monotonic() - since
            await asyncio.sleep(0.1)
    raise RuntimeError("the service did not switch within 300 s")


async def _loop(args: argparse.Namespace, store: list[str], url: str, new: Path) -> dict[str, Any]:
    records = read_dataset(args.gallery).records
    queries = [r.path.read_bytes() for r in records[:64]]
    extra = [mirrored(r.path) for r in records[-args.writers * 150 :]]
    stop, oracle = asyncio.Event(), dict[str, Any]()
    searching = [asyncio.create_task(_searches(url, queries, stop)) for _ in range(args.clients)]
    writing = [
        asyncio.create_task(_writes(url, extra[i :: args.writers], i, stop, oracle))
        for i in range(args.writers)
    ]
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        live = (await http.get("/readyz")).json()["collection"]
    rc, _, figures["export_s"] = await asyncio.to_thread(
        _carsearch, store, "export-dataset", "--out", str(args.work / "export")
    )
    figures["export_rc"] = rc
    build = ["index", "--gallery", str(args.gallery), "--model", str(new)]
    build += ["--gate-photos", str(args.gate_photos)]
    rc, out, figures["build_s"] = await asyncio.to_thread(_carsearch, store, *build)
    figures["build_rc"] = rc
    figures["gate"] = [line for line in out.splitlines() if "rollout_gate" in line][-4:]
    if rc == 3:
        rc, out, figures["forced_build_s"] = await asyncio.to_thread(
            _carsearch, store, *build, "--force"
        )
        figures["forced_rc"] = rc
    moved = time.monotonic()
    figures["switch_s"] = round(await _switch(url, live, moved), 2)
    rc, out, _ = await asyncio.to_thread(_carsearch, store, "index", "status", "--json")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    status = json.loads(lines[-1]) if lines else {}
    figures["status_rc"], figures["gate_record"] = rc, status.get("live_gate")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        rolled_from = (await http.get("/readyz")).json()["collection"]
    rc, _, _ = await asyncio.to_thread(_carsearch, store, "index", "rollback")
    figures["rollback_rc"] = rc
    figures["rollback_switch_s"] = round(await _switch(url, rolled_from, time.monotonic()), 2)
    rc, _, _ = await asyncio.to_thread(_carsearch, store, "model", "list")
    figures["model_list_rc"] = rc
    await asyncio.sleep(2)
    stop.set()
    answered = [await t for t in searching]
    write_failures = sum([await t for t in writing])
    figures["queries_answered"] = sum(a for a, _ in answered)
    figures["queries_failed"] = sum(f for _, f in answered)
    figures["writes_acknowledged_cars"] = len(oracle)
    figures["writes_failed"] = write_failures
    figures["lost"] = await _lost(url, oracle)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gallery", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="the retrained model folder")
    parser.add_argument("--live", default="zero-shot", help="the model indexed first")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--gate-photos", type=int, default=6000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.work = Path(tempfile.mkdtemp(prefix="carsearch-loop-"))
    new = args.model or args.work / "new-model"
    if args.model is None:
        save_model(build_model(pooling="gem"), new)
    store = ["--qdrant-path", str(args.work / "qdrant"), "--data-dir", str(args.work / "data")]
    first = ["index", "--gallery", str(args.gallery), "--model", args.live]
    rc, out, index_s = _carsearch(store, *first)
    if rc != 0:
        raise RuntimeError(out[-2000:])
    env = {"CARSEARCH_API_KEY": KEY, "CARSEARCH_MODEL_POLL_S": "1"}
    with Service(store, env=env) as server:
        figures = asyncio.run(_loop(args, store, server.url, new))
    figures["first_index_s"] = round(index_s, 1)
    logger.info(
        "loop: %d queries answered, %d failed; %d cars written, %d writes failed, lost %s; "
        "build %.0f s (gate rc %s), switch %.2f s, rollback switch %.2f s",
        figures["queries_answered"],
        figures["queries_failed"],
        figures["writes_acknowledged_cars"],
        figures["writes_failed"],
        figures["lost"],
        figures["build_s"],
        figures["build_rc"],
        figures["switch_s"],
        figures["rollback_switch_s"],
    )
    sys.stdout.write(json.dumps(figures, default=str) + "\n")


if __name__ == "__main__":
    main()
