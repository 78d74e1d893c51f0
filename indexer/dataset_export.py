"""The gallery as the index holds it now, as a dataset training reads: gallery photos and cars
added through the API, less the deleted ones, labelled as last edited.

The folder written::

    <out>/manifest.csv     path, class_name, make, model, year, body, split, car_id, photo_id,
                           external_id, view
    <out>/photos/<photo id>.<ext>   each photo, linked (or copied) from the gallery or the uploads

Every photo is labelled with its car's class. ``split`` is ``train`` for the photos to train on
and ``holdout`` for the photos of a share of each class's cars (chosen by car id: the same every
time; a car's photos are never split) that training leaves out and records, so that the
rollout gate has photos to judge the new model on. Classes with fewer than 2 cars are left out
and named.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.build_plan import GALLERY_ROOT_KEY, Desired
from indexer.engines.base import CollectionHeld
from indexer.fields import FieldSchema
from indexer.gallery import scan_gallery
from indexer.served import ServedCollections

logger = logging.getLogger(__name__)

HOLDOUT = "holdout"
COLUMNS = (
    "path",
    "class_name",
    "make",
    "model",
    "year",
    "body",
    "split",
    "car_id",
    "photo_id",
    "external_id",
    "view",
)


class ExportError(ValueError):
    """The index cannot give a dataset (no collection, no labels, no gallery folder)."""


@dataclass
class ExportReport:
    manifest: Path
    photos: int = 0
    classes: int = 0
    held_out: int = 0
    unlabelled: int = 0
    missing: list[str] = field(default_factory=list)  # photo ids whose file is gone
    small_classes: list[str] = field(default_factory=list)  # fewer than 2 cars: left out


def _held_out(ids: list[str], share: float) -> set[str]:
    count = min(int(len(ids) * share), len(ids) - 2)
    return set(sorted(ids)[:count]) if count > 0 else set()


def _desired_cars(
    served: ServedCollections, fields: FieldSchema, root: Path
) -> list[tuple[str, dict[str, Any]]]:
    """The cars a collection built from ``root`` holds: the gallery's (as edited) and the cars
    added through the API, less those deleted."""
    desired = Desired.of(scan_gallery(root), served.ledger, fields)
    gallery = [(item.id, desired.fields(item) | {"source": "gallery"}) for item in desired.items]
    return gallery + [(u.id, u.payload.to_payload()) for u in desired.uploads.values()]


def export_dataset(
    served: ServedCollections,
    fields: FieldSchema,
    out: Path,
    *,
    gallery: Path | None = None,
    holdout: float = 0.1,
    copy: bool = False,
) -> ExportReport:
    """Write the live collection's cars as a manifest folder at ``out``. Where another process
    holds that collection (a service on the embedded store), the cars are what it was built to
    hold: the gallery, and the cars added, edited and deleted through the API."""
    if not 0 <= holdout < 1:
        raise ExportError(f"--holdout is a share of each class's photos in [0, 1), not {holdout}")
    live, root, cars = _live_cars(served, fields, gallery)
    report = ExportReport(out / "manifest.csv")
    by_class: dict[str, list[Member]] = defaultdict(list)
    for car_id, payload in cars:
        if payload.get("class_name"):
            by_class[str(payload["class_name"])].append((car_id, payload))
        else:
            report.unlabelled += 1
    if not by_class:
        raise ExportError(
            f"none of the {len(cars)} cars of {live} has a class name "
            f"({report.unlabelled} lack one): there is nothing to train on"
        )
    if root is None and any(p.get("source") != "upload" for c in by_class.values() for _, p in c):
        raise ExportError(f"{live} does not record its gallery folder: name it with --gallery")
    cars_of = {name: sorted({_car_of(m) for m in members}) for name, members in by_class.items()}
    report.small_classes = sorted(c for c, cars in cars_of.items() if len(cars) < 2)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    rows = []
    for class_name in sorted(set(by_class) - set(report.small_classes)):
        held = _held_out(cars_of[class_name], holdout)
        for member in sorted(by_class[class_name], key=lambda m: m[0]):
            base = served.ledger.uploads_dir if member[1].get("source") == "upload" else root
            assert base is not None
            row = _photo_row(member, class_name, base, out, copy, held)
            if row is None:
                report.missing.append(member[0])
                continue
            report.held_out += row["split"] == HOLDOUT
            rows.append(row)
    with report.manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    report.photos = len(rows)
    report.classes = len({r["class_name"] for r in rows})
    if report.small_classes:
        logger.warning(
            "classes with fewer than 2 cars left out: %s", ", ".join(report.small_classes)
        )
    if report.missing:
        logger.warning("%d photos are gone: left out", len(report.missing))
    return report


Member = tuple[str, dict[str, Any]]
"""A photo of the collection: its id and payload."""


def _car_of(member: Member) -> str:
    return str(member[1].get("car_id") or member[0])


def _live_cars(
    served: ServedCollections, fields: FieldSchema, gallery: Path | None
) -> tuple[str, Path | None, list[Member]]:
    """The live collection, its gallery folder (``gallery``, else the one it records) and its
    photos: as stored, or, where another process holds it, as it was built to hold them."""
    live = served.state().live
    if live is None:
        raise ExportError(f"no collection behind the alias {served.alias!r}: build one first")
    recorded = served.engine.metadata(live).get(GALLERY_ROOT_KEY)
    root = gallery or (Path(recorded) if recorded else None)
    if root is not None and not root.is_dir():
        raise ExportError(f"the gallery folder {root} does not exist: name it with --gallery")
    try:
        return live, root, list(served.engine.scroll(live, None))
    except CollectionHeld:
        if root is None:
            raise ExportError(
                f"{live} is open in another process and records no gallery folder: "
                "name it with --gallery"
            ) from None
        logger.info("%s is held by another process: exporting the cars it was built to hold", live)
        return live, root, _desired_cars(served, fields, root)


def _photo_row(
    member: Member, class_name: str, base: Path, out: Path, copy: bool, held: set[str]
) -> dict[str, Any] | None:
    """The photo linked (or copied) into ``out/photos`` and its manifest row; None when its
    file is gone."""
    photo_id, payload = member
    source = base / str(payload.get("path") or "")
    if not source.is_file():
        return None
    target = out / "photos" / f"{photo_id}{source.suffix.lower()}"
    target.unlink(missing_ok=True)
    if copy:
        shutil.copyfile(source, target)
    else:
        os.symlink(source.resolve(), target)
    car_id = _car_of(member)
    return {
        "path": f"photos/{target.name}",
        "class_name": class_name,
        **{k: payload.get(k) for k in ("make", "model", "year", "body")},
        "split": HOLDOUT if car_id in held else "train",
        "car_id": car_id,
        "photo_id": photo_id,
        "external_id": payload.get("external_id"),
        "view": payload.get("view"),
    }
