"""Every path under the data folder (``CARSEARCH_DATA_DIR``, default ``data``), shared by the
service replicas and the commands: one owner, so the CLI and the service use the same caches.

    uploads/<sha256>.<ext|json>   cars added through the API (``indexer.ledger``)
    uploads/quarantine/           upload records found without their photo
    tombstones.json               cars deleted through the API
    edits/<car id>.json           edits made through the API
    locks/                        one car's (or one external id's) writers at a time
    .ledger.lock                  the tombstone list's writers
    .rollout.lock                 writes (shared) against a build's switch of the alias
    models/<version>/             model copies of the index, unpacked to be loaded
    onnx/                         ONNX graphs exported from the model (float32 and int8)
    thumbs/<car id>.jpg           thumbnails
    cursor.key, .cursor.lock      the key that signs browse cursors
    index-skipped.jsonl           the files the last build could not use
    snapshots/                    downloaded server snapshots
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def quarantine(self) -> Path:
        return self.uploads / "quarantine"

    @property
    def tombstones(self) -> Path:
        return self.root / "tombstones.json"

    @property
    def edits(self) -> Path:
        return self.root / "edits"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def ledger_lock(self) -> Path:
        return self.root / ".ledger.lock"

    @property
    def rollout_lock(self) -> Path:
        return self.root / ".rollout.lock"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def onnx(self) -> Path:
        return self.root / "onnx"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    @property
    def cursor_key(self) -> Path:
        return self.root / "cursor.key"

    @property
    def cursor_lock(self) -> Path:
        return self.root / ".cursor.lock"

    @property
    def skipped_report(self) -> Path:
        return self.root / "index-skipped.jsonl"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"
