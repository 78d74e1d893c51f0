"""The model-copy store of the embedded engine: folders in the store folder beside the
collections (``indexer.engines.edge.store``)::

    <qdrant_path>/models/<model version>/  the servable model folder that made the vectors
    <qdrant_path>/models/<model version>/files.json   written last: a copy with it is whole
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from carembed.atomic import write_atomically

COMPLETE_FILE = "files.json"


class EdgeModelCopies:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _model_dir(self, version: str) -> Path:
        return self.root / "models" / version

    def has(self, version: str) -> bool:
        return (self._model_dir(version) / COMPLETE_FILE).is_file()

    def put(self, version: str, files: dict[str, bytes]) -> None:
        folder = self._model_dir(version)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomically(folder / name, data)
        write_atomically(folder / COMPLETE_FILE, json.dumps(sorted(files)).encode())

    def versions(self) -> list[str]:
        folder = self.root / "models"
        found = folder.iterdir() if folder.is_dir() else iter(())
        return sorted(p.name for p in found if self.has(p.name))

    def get(self, version: str, names: Collection[str] | None = None) -> dict[str, bytes] | None:
        if not self.has(version):
            return None
        folder = self._model_dir(version)
        stored = json.loads((folder / COMPLETE_FILE).read_bytes())
        return {n: (folder / n).read_bytes() for n in stored if names is None or n in names}
