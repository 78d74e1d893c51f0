"""Photos re-used across cars: found on add, look-alikes left alone, the cost of the check and
of the audit.

    python benchmarks/reuse.py --data PHOTOS [--sample 500] [--cost-photos 100000]

- Found: the dev set's photos (sides >= 64 px) are indexed as cars of one photo each (Qdrant
  Edge, the shipped model); ``--sample`` of them are altered in each way (resized to 50 %, JPEG
  quality 35, cropped 8 % on each side, brightness +20 %, a line of text stamped on a corner,
  mirrored) and looked up as an add of another car does (``indexer.reuse.find_reused``): the
  share whose original is found, per alteration (target >= 98 %).
- Look-alikes: every pair of different photos of one car model in the dev set, judged by the
  rule (``indexer.copies``): the share called re-use (target <= 0.1 %); and the dev set's own
  re-used photos (each photo looked up among the others), listed.
- Cost (``--cost-photos``): the lookup of one photo against that many indexed photos
  (synthetic vectors and hashes), p50 (target <= 5 ms added to an add), and the audit of them
  all (target <= 10 minutes on 2 cores).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from store import latencies_ms

from carembed.artifact import load_or_default
from carembed.datasets import CarRecord, read_dataset
from carembed.embedder import Embedder
from indexer.cars import NewPhoto
from indexer.copies import CopySignal, signal_of, verdict
from indexer.engines.base import NewPoint, vectors_of
from indexer.index import CarIndex
from indexer.payload import CarFields, CarPayload, Listing, point_id
from indexer.reuse import audit, find_reused
from indexer.settings import StoreSettings
from indexer.versions import new_collection_name

logger = logging.getLogger("reuse")
DIM = 1280


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def altered(image: Image.Image) -> dict[str, bytes]:
    """The issue's six alterations of a photo, as JPEG bytes."""
    w, h = image.size
    dx, dy = round(w * 0.08), round(h * 0.08)
    stamped = image.copy()
    ImageDraw.Draw(stamped).text((10, 10), "CALL 555-0199 BEST DEALS", fill=(255, 255, 0))
    return {
        "resized_50": _jpeg(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)),
        "jpeg_35": _jpeg(image, 35),
        "cropped_8": _jpeg(image.crop((dx, dy, w - dx, h - dy))),
        "brightness_20": _jpeg(ImageEnhance.Brightness(image).enhance(1.2)),
        "text": _jpeg(stamped),
        "mirrored": _jpeg(ImageOps.mirror(image)),
    }


def _found(args: argparse.Namespace, records: list[CarRecord], work: Path) -> dict[str, object]:
    embedder = Embedder(load_or_default(None), engine="auto")
    index = CarIndex.open(StoreSettings(qdrant_path=work / "q", data_dir=work / "d"))
    index.ensure_live(embedder)
    version = embedder.version
    ids: dict[str, str] = {}
    start = time.perf_counter()
    for lo in range(0, len(records), 32):
        batch = records[lo : lo + 32]
        datas = [r.path.read_bytes() for r in batch]
        vectors = embedder.embed(datas)
        for record, data, vector in zip(batch, datas, vectors, strict=True):
            photo = NewPhoto(data, "jpg", (0, 0), vector, signal=signal_of(data))
            car = index.cars.add(
                version,
                [photo],
                CarFields(class_name=record.class_name),
                Listing(),
                on_reused="allow",
            ).car
            ids[str(record.path)] = car.photos[0].id
    logger.info("%d photos indexed in %.0f s", len(records), time.perf_counter() - start)
    live = index.serving(version)
    rng = np.random.default_rng(args.seed)
    sample = [records[i] for i in rng.choice(len(records), args.sample, replace=False)]
    hits: dict[str, list[bool]] = defaultdict(list)
    for record in sample:
        with Image.open(record.path) as img:
            variants = altered(img.convert("RGB"))
        vectors = embedder.embed(list(variants.values()))
        for (how, data), vector in zip(variants.items(), vectors, strict=True):
            signal = signal_of(data)
            sha = hashlib.sha256(data).hexdigest()
            found = find_reused(index.engine, live, point_id("query"), sha, signal, vector)
            hits[how].append(ids[str(record.path)] in {r.photo_id for r in found or []})
    # The dev set's own re-used photos: each photo looked up among the others.
    payloads = {pid: CarPayload.model_validate(p) for pid, p in index.engine.scroll(live, None)}
    stored_vectors = vectors_of(index.engine, live, list(payloads))
    path_of = {pid: path for path, pid in ids.items()}
    duplicates = set()
    for pid, stored in payloads.items():
        for other in (
            find_reused(
                index.engine,
                live,
                stored.car_id or pid,
                stored.sha256 or "",
                CopySignal.stored(stored),
                stored_vectors.get(pid),
            )
            or []
        ):
            pair = tuple(
                sorted((path_of.get(pid, pid), path_of.get(other.photo_id, other.photo_id)))
            )
            duplicates.add((*pair, other.kind, other.similarity))
    look_alikes = _look_alikes(payloads, stored_vectors)
    index.close()
    return {
        "look_alikes": look_alikes,
        "indexed": len(records),
        "sample": len(sample),
        "found": {how: round(float(np.mean(v)), 4) for how, v in hits.items()},
        "dev_set_reused_pairs": sorted(duplicates),
    }


def _look_alikes(
    payloads: dict[str, CarPayload], vectors: dict[str, np.ndarray]
) -> dict[str, object]:
    """Every pair of different photos of one car model, judged by the rule."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for pid, payload in payloads.items():
        by_class[payload.class_name or ""].append(pid)
    pairs = flagged = 0
    for members in by_class.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                pairs += 1
                cosine = float(vectors[a] @ vectors[b])
                pa, pb = payloads[a], payloads[b]
                signal, other = CopySignal.stored(pa), CopySignal.stored(pb)
                flagged += verdict(pa.sha256 or "", signal, pb.sha256, other, cosine) is not None
    return {
        "same_model_pairs": pairs,
        "called_reuse": flagged,
        "share": round(flagged / max(pairs, 1), 6),
    }


def _cost(args: argparse.Namespace, work: Path) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    n = args.cost_photos
    index = CarIndex.open(StoreSettings(qdrant_path=work / "cost", data_dir=work / "cost-d"))
    name = new_collection_name(index.alias, "bench")
    index.engine.create(name, DIM, bulk=True)
    signals = []
    for lo in range(0, n, 512):
        count = min(512, n - lo)
        vectors = rng.standard_normal((count, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        points = []
        for j in range(count):
            bits = rng.integers(0, 2**63, 3, dtype=np.int64)
            signal = CopySignal(*(f"{int(b):016x}" for b in bits))
            signals.append(signal)
            car = point_id(f"car-{lo + j}")
            payload = CarPayload(
                car_id=car, cover=True, sha256=f"{lo + j:064x}", **signal.payload()
            )
            points.append(NewPoint(car, vectors[j], payload))
        index.engine.upsert(name, points)
    index.engine.optimize(name)
    queries = rng.standard_normal((200, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    lookup_ms = latencies_ms(
        lambda q: find_reused(
            index.engine, name, point_id("q"), f"{q:064x}x", signals[q], queries[q]
        ),
        200,
    )
    logger.info("lookup p50 %.2f ms", float(np.percentile(lookup_ms, 50)))
    start = time.perf_counter()
    pairs = audit(index.engine, name, progress=True)
    audit_s = time.perf_counter() - start
    index.close()
    return {
        "photos": n,
        "lookup_p50_ms": round(float(np.percentile(lookup_ms, 50)), 2),
        "lookup_p99_ms": round(float(np.percentile(lookup_ms, 99)), 2),
        "audit_s": round(audit_s, 1),
        "audit_pairs": len(pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument("--cost-photos", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only-cost", action="store_true", help="skip the dev-set figures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records = []
    for record in read_dataset(args.data).records:
        with Image.open(record.path) as img:
            if min(img.size) >= 64:
                records.append(record)
    work = Path(tempfile.mkdtemp(prefix="carsearch-reuse-"))
    found = None if args.only_cost else _found(args, records, work)
    logger.info("found: %s", json.dumps(found))
    figures = {"found": found, "cost": _cost(args, work) if args.cost_photos else None}
    logger.info("%s", figures)
    sys.stdout.write(json.dumps(figures) + "\n")  # the machine-readable last line


if __name__ == "__main__":
    main()
