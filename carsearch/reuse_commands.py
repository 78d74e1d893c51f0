"""``carsearch reused``: the audit of the whole gallery for photos re-used across cars, as a
CSV report (one row per pair of photos of two cars that are one photo, by group of cars); a
store that cannot be read is exit 2."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

from carsearch.options import add_qdrant_args, emit, open_index

COLUMNS = (
    "group",
    "car_id",
    "external_id",
    "photo_id",
    "other_car_id",
    "other_external_id",
    "other_photo_id",
    "kind",
    "similarity",
)


def _from_store(args: argparse.Namespace) -> list[dict[str, Any]]:
    from indexer import CollectionHeld, StoreError, audit

    index = open_index(args)
    try:
        live = index.state().live
        if live is None:
            raise StoreError(f"no collection behind the alias {index.alias!r}: build one first")
        try:
            pairs = audit(index.engine, live, progress=True)
        except CollectionHeld:
            raise StoreError(
                f"{live} is open in a running service (the embedded store): run the audit "
                "through it, `carsearch reused --service URL` (CARSEARCH_API_KEY: its write key)"
            ) from None
    finally:
        index.close()
    return [
        {
            "group": p.group,
            "car_id": p.photo.car_id,
            "external_id": p.photo.payload.external_id,
            "photo_id": p.photo.id,
            "other_car_id": p.other.car_id,
            "other_external_id": p.other.external_id,
            "other_photo_id": p.other.photo_id,
            "kind": p.other.kind,
            "similarity": p.other.similarity,
        }
        for p in pairs
    ]


def _from_service(url: str) -> list[dict[str, Any]]:
    import httpx

    from indexer import StoreError

    key = os.environ.get("CARSEARCH_API_KEY", "")
    response = httpx.get(
        url.rstrip("/") + "/api/v1/reused", headers={"X-API-Key": key}, timeout=3600
    )
    if response.status_code != 200:
        raise StoreError(f"the service answered {response.status_code}: {response.text[:300]}")
    return [
        {
            "group": p["group"],
            "car_id": p["car_id"],
            "external_id": p["external_id"],
            "photo_id": p["photo_id"],
            "other_car_id": p["other"]["car_id"],
            "other_external_id": p["other"]["external_id"],
            "other_photo_id": p["other"]["photo_id"],
            "kind": p["other"]["kind"],
            "similarity": p["other"]["similarity"],
        }
        for p in response.json()["pairs"]
    ]


def _reused(args: argparse.Namespace) -> int:
    rows = _from_service(args.service) if args.service else _from_store(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    groups = len({r["group"] for r in rows})
    emit(f"{len(rows)} pairs of re-used photos in {groups} groups of cars written to {args.out}")
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "reused",
        help="the audit: groups of cars that share a photo (copies, not look-alikes), as CSV",
    )
    parser.add_argument("--out", type=Path, required=True, help="the CSV report to write")
    parser.add_argument(
        "--service",
        default=None,
        help="run it through a running service at this URL (its store is embedded and held "
        "by it); the write key from CARSEARCH_API_KEY",
    )
    add_qdrant_args(parser)
    parser.set_defaults(handler=_reused)
