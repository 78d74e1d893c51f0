"""Backups: a snapshot of the live collection, created on the server and downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

from carembed.atomic import replace_durably
from indexer.build import IndexBuildError
from indexer.index import CarIndex
from indexer.server import ServerEngine

logger = logging.getLogger(__name__)


def snapshot(index: CarIndex, out: Path) -> Path:
    """Create a snapshot of the collection behind the alias and download it into ``out``."""
    import httpx

    settings, engine = index.settings, index.engine
    if not isinstance(engine, ServerEngine) or settings.qdrant_url is None:
        raise IndexBuildError(
            "snapshots need a Qdrant server; the embedded store is a folder of shards: copy "
            f"{settings.qdrant_path} (aliases.json and the collections it names) while no "
            "build runs"
        )
    live = index.state().live
    if live is None:
        raise IndexBuildError(f"no collection behind the alias {settings.alias!r}")
    description = engine.call("snapshot", engine.client.create_snapshot, live, wait=True)
    if description is None:
        raise IndexBuildError(f"the server did not create a snapshot of {live}")
    out.mkdir(parents=True, exist_ok=True)
    target = out / description.name
    headers = {}
    if settings.qdrant_api_key is not None:
        headers["api-key"] = settings.qdrant_api_key.get_secret_value()
    url = f"{settings.qdrant_url.rstrip('/')}/collections/{live}/snapshots/{description.name}"
    partial = target.with_suffix(target.suffix + ".partial")
    with httpx.stream("GET", url, headers=headers, timeout=settings.qdrant_timeout_s) as response:
        response.raise_for_status()
        with partial.open("wb") as fh:
            for chunk in response.iter_bytes(1 << 20):
                fh.write(chunk)
    replace_durably(partial, target)
    logger.info("snapshot of %s: %s (%d bytes)", live, target, target.stat().st_size)
    return target
