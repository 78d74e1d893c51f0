"""The alias registry of the embedded engine: a file in the store folder beside the
collections (``indexer.engines.edge.store``)::

    <qdrant_path>/aliases.json            {"aliases": {"cars": "<collection>", ...}}

``aliases.json`` is replaced whole (written to a temporary file, fsynced, renamed) under a file
lock, after a compare of what it names: a move is a compare-and-swap across processes."""

from __future__ import annotations

import json
from pathlib import Path

from carembed.atomic import write_atomically
from indexer.engines.base import check_alias
from indexer.files import locked
from indexer.versions import PREVIOUS_SUFFIX, AliasState

ALIASES_FILE = "aliases.json"


class EdgeAliases:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._cached: tuple[tuple[int, int, int], dict[str, str]] | None = None

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
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        names = dict(json.loads(self._aliases_path.read_bytes())["aliases"])
        self._cached = (key, names)
        return names

    def state(self, alias: str) -> AliasState:
        names = self._read_aliases()
        return AliasState(alias, names.get(alias), names.get(alias + PREVIOUS_SUFFIX))

    def move(self, before: AliasState, after: AliasState) -> None:
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
