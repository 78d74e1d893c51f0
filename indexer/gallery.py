"""A gallery as the indexer sees it: readable records with their content hash, car and point
id."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from carembed.datasets import CarRecord, read_dataset
from carembed.hashing import sha256_file
from indexer.fields import MAX_EXTERNAL_ID
from indexer.payload import gallery_car_id, photo_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleryItem:
    record: CarRecord
    sha256: str

    @property
    def car_id(self) -> str:
        """The rows of a manifest that share an ``external_id`` are one car's photos."""
        external = self.record.extra.get("external_id") or None
        return gallery_car_id(self.sha256, external and external[:MAX_EXTERNAL_ID])

    @property
    def id(self) -> str:
        return photo_id(self.car_id, self.sha256)


@dataclass
class GalleryScan:
    root: Path
    items: list[GalleryItem]  # one per distinct content
    duplicates: list[tuple[str, str]]  # (path, path of the first file with the same bytes)
    unreadable: list[tuple[str, str]]  # (path, reason): files that could not even be read


def scan_gallery(path: Path) -> GalleryScan:
    """Read the gallery's layout and hash every file; the same bytes twice count once."""
    dataset = read_dataset(path)
    seen: dict[str, GalleryItem] = {}
    duplicates: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    for record in dataset.records:
        try:
            sha = sha256_file(record.path)
        except OSError as exc:
            unreadable.append((record.relative, f"unreadable: {exc.strerror or exc}"))
            continue
        if sha in seen:
            duplicates.append((record.relative, seen[sha].record.relative))
            continue
        seen[sha] = GalleryItem(record, sha)
    if duplicates:
        logger.info("%d duplicate files (same bytes as another) indexed once", len(duplicates))
    return GalleryScan(dataset.root, list(seen.values()), duplicates, unreadable)
