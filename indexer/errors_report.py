"""The JSON-lines report of files that could not be indexed."""

from __future__ import annotations

import json
from pathlib import Path


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for relative, reason in skipped:
            fh.write(json.dumps({"path": relative, "reason": reason}) + "\n")
