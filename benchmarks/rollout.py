"""A rebuild after retraining while the service answers, as an operator runs it.

    python benchmarks/rollout.py ../shared/datasets/stanford-cars-dev [--model NEW]

1. Indexes the gallery with the default model (`carsearch index`) into a temporary embedded
   store and starts `carsearch serve` on it (a subprocess on 127.0.0.1).
2. Adds cars through the API (mirrored gallery photos: new bytes), then starts queries in a
   loop and `carsearch index --gallery G --model NEW` in another process; while that build
   runs, adds more cars and deletes some added cars and some gallery cars.
3. Prints: failed queries (target 0), seconds from the build's end (the alias move) to the
   service answering with the new model (target < 10), and whether every added car is found
   (top hit, by its photo) and every deleted car is gone, with exact point counts.

NEW defaults to the default backbone with GeM pooling (another model version standing in for
a retrained one). Every loop is bounded in count and time. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from service import Service, mirrored

from carembed.artifact import save_model
from carembed.datasets import read_dataset
from carembed.identity import parse_embedding_version
from carembed.model import build_model

logger = logging.getLogger("rollout")
KEY = "rollout-benchmark"
SWITCH_WAIT_S = 600


def _model_of(embedding_version: str) -> str | None:
    """The model version of a served embedding version (which also names its precision)."""
    parsed = parse_embedding_version(embedding_version)
    return parsed.model_version if parsed else None


def _store_args(work: Path) -> list[str]:
    return ["--qdrant-path", str(work / "qdrant"), "--data-dir", str(work / "data")]


async def _query_loop(
    url: str, photos: list[bytes], stop: asyncio.Event
) -> tuple[int, int, list[str]]:
    """(answered, failed, model versions seen) of one client searching until ``stop``."""
    ok = failed = 0
    versions: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for i in range(1_000_000):
            if stop.is_set():
                break
            try:
                r = await http.post(
                    "/api/v1/search", files={"image": ("q.jpg", photos[i % len(photos)])}
                )
            except httpx.HTTPError:
                failed += 1
                continue
            if r.status_code == 200:
                ok += 1
                version = r.json()["embedding_version"]
                if not versions or versions[-1] != version:
                    versions.append(version)
            else:
                failed += 1
                logger.warning("query failed: %d %s", r.status_code, r.text[:200])
    return ok, failed, versions


async def _rollout(
    args: argparse.Namespace, work: Path, url: str, new_dir: Path
) -> dict[str, object]:
    records = read_dataset(args.gallery).records
    queries = [r.path.read_bytes() for r in records[:50]]
    extra = [mirrored(r.path) for r in records[-20:]]
    headers = {"X-API-Key": KEY}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def add(data: bytes) -> str:
            r = await http.post("/api/v1/cars", files={"image": ("c.jpg", data)}, headers=headers)
            r.raise_for_status()
            return str(r.json()["id"])

        async def top(data: bytes) -> dict[str, object]:
            r = await http.post("/api/v1/search", files={"image": ("q.jpg", data)})
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]

        before = [await add(d) for d in extra[:5]]
        gallery_victims = [str((await top(q))["hits"][0]["id"]) for q in queries[:2]]  # type: ignore[index]
        points_before = (await http.get("/readyz")).json()["points"]
        stop = asyncio.Event()
        loop_task = asyncio.create_task(_query_loop(url, queries, stop))
        command = [
            sys.executable,
            "-m",
            "carsearch",
            "index",
            "--gallery",
            str(args.gallery),
            "--model",
            str(new_dir),
            "--no-gate",  # the stand-in is no better a model: this measures the switch
            *_store_args(work),
        ]
        started = time.monotonic()
        build = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        await asyncio.sleep(2)
        during = [await add(d) for d in extra[5:10]]
        deleted = before[:3] + gallery_victims
        for car in deleted:
            (await http.delete(f"/api/v1/cars/{car}", headers=headers)).raise_for_status()
        _, err = await asyncio.wait_for(build.communicate(), timeout=1800)
        build_s = time.monotonic() - started
        if build.returncode != 0:
            raise RuntimeError(f"the build failed: {err.decode()[-2000:]}")
        moved = time.monotonic()
        new_version = json.loads((new_dir / "config.json").read_text())["model_version"]
        while _model_of((await http.get("/readyz")).json()["embedding_version"]) != new_version:
            if time.monotonic() - moved > SWITCH_WAIT_S:
                log = (work / "service.log").read_text()[-3000:]
                raise RuntimeError(f"no switch within {SWITCH_WAIT_S} s; the service said:\n{log}")
            await asyncio.sleep(0.1)
        switch_s = time.monotonic() - moved
        after = [await add(d) for d in extra[10:12]]
        await asyncio.sleep(2)
        stop.set()
        answered, failed, versions = await loop_task
        added = [c for c in before + during + after if c not in deleted]
        found = 0
        for car, data in zip(
            before + during + after, extra[:5] + extra[5:10] + extra[10:12], strict=True
        ):
            if car in added and (await top(data))["hits"][0]["id"] == car:  # type: ignore[index]
                found += 1
        gone = sum([(await http.get(f"/api/v1/cars/{c}")).status_code == 404 for c in deleted])
        ready = (await http.get("/readyz")).json()
    expected_points = points_before + len(during) + len(after) - len(deleted)
    return {
        "queries_answered": answered,
        "queries_failed": failed,
        "model_versions_seen": versions,
        "build_s": round(build_s, 1),
        "switch_s": round(switch_s, 2),
        "added_found": f"{found}/{len(added)}",
        "deleted_gone": f"{gone}/{len(deleted)}",
        "points": ready["points"],
        "points_expected": expected_points,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gallery", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="the retrained model folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="carsearch-rollout-"))
    new_dir = args.model or work / "new-model"
    if args.model is None:
        save_model(build_model(pooling="gem"), new_dir)
    first = subprocess.run(
        [
            sys.executable,
            "-m",
            "carsearch",
            "index",
            "--gallery",
            str(args.gallery),
            *_store_args(work),
        ],
        capture_output=True,
        text=True,
    )
    if first.returncode != 0:
        raise RuntimeError(first.stderr[-2000:])
    env = {"CARSEARCH_API_KEY": KEY, "CARSEARCH_MODEL_POLL_S": "1"}
    with Service(_store_args(work), env=env, log=work / "service.log") as server:
        figures = asyncio.run(_rollout(args, work, server.url, new_dir))
    logger.info(
        "rollout: %d queries answered, %d failed; build %.0f s; switch %.2f s after the alias "
        "moved; added cars found %s, deleted cars gone %s; points %s (expected %s)",
        figures["queries_answered"],
        figures["queries_failed"],
        figures["build_s"],
        figures["switch_s"],
        figures["added_found"],
        figures["deleted_gone"],
        figures["points"],
        figures["points_expected"],
    )
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
