"""The alias registry and the model-copy store of the embedded engine: files in the store
folder beside the collections (``indexer.edge``)::

    <qdrant_path>/aliases.json            {"aliases": {"cars": "<collection>", ...}}
    <qdrant_path>/models/<model version>/  the servable model folder that made the vectors

``aliases.json`` is replaced whole (written to a temporary file, fsynced, renamed) under a file
lock, after a compare of what it names: a move is a compare-and-swap across processes."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from carembed.atomic import write_atomically
from indexer.engine import check_alias
from indexer.files import locked
from indexer.versions import PREVIOUS_SUFFIX, AliasState

ALIASES_FILE = "aliases.json"
COMPLETE_FILE = "files.json"  # written last: a model copy with it is whole


class EdgeAliases:
    root: Path
    _aliases: tuple[tuple[int, int, int], dict[str, str]] | None = None

    @property
    def _aliases_path(self) -> Path:
        return self.root / ALIASES_FILE

    def _read_aliases(self) -> dict[str, str]:
        """The alias file, re-read only when it changed (a stat per call)."""
        try:
            st = self._aliases_path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._aliases
        if cached is not None and cached[0] == key:
            return cached[1]
        names = dict(json.loads(self._aliases_path.read_bytes())["aliases"])
        self._aliases = (key, names)
        return names

    def alias_state(self, alias: str) -> AliasState:
        names = self._read_aliases()
        return AliasState(alias, names.get(alias), names.get(alias + PREVIOUS_SUFFIX))

    def move_aliases(self, before: AliasState, after: AliasState) -> None:
        with locked(self.root / ".aliases.lock"):
            names = dict(self._read_aliases())
            current = AliasState(
                before.alias, names.get(before.alias), names.get(before.alias + PREVIOUS_SUFFIX)
            )
            check_alias(before, current)
            for alias, collection in after.names.items():
                if collection is None:
                    names.pop(alias, None)
                else:
                    names[alias] = collection
            body = json.dumps({"format": 1, "aliases": names}, indent=2, sort_keys=True)
            write_atomically(self._aliases_path, body.encode())


class EdgeModelCopies:
    root: Path

    def _model_dir(self, version: str) -> Path:
        return self.root / "models" / version

    def has_model(self, version: str) -> bool:
        return (self._model_dir(version) / COMPLETE_FILE).is_file()

    def put_model(self, version: str, files: dict[str, bytes]) -> None:
        folder = self._model_dir(version)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomically(folder / name, data)
        write_atomically(folder / COMPLETE_FILE, json.dumps(sorted(files)).encode())

    def model_versions(self) -> list[str]:
        folder = self.root / "models"
        found = folder.iterdir() if folder.is_dir() else iter(())
        return sorted(p.name for p in found if self.has_model(p.name))

    def get_model(
        self, version: str, names: Collection[str] | None = None
    ) -> dict[str, bytes] | None:
        if not self.has_model(version):
            return None
        folder = self._model_dir(version)
        stored = json.loads((folder / COMPLETE_FILE).read_bytes())
        return {n: (folder / n).read_bytes() for n in stored if names is None or n in names}
