"""Backups: a snapshot of the live collection, created on the server and downloaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from carembed.store import QdrantSettings, resolve_alias
from indexer.build import IndexBuildError

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)


def snapshot(client: QdrantClient, settings: QdrantSettings, out: Path) -> Path:
    """Create a snapshot of the collection behind the alias and download it into ``out``."""
    import httpx

    if settings.qdrant_url is None:
        raise IndexBuildError(
            "snapshots need a Qdrant server; the embedded store is a folder: stop the service "
            f"and copy {settings.qdrant_path}"
        )
    live = resolve_alias(client, settings.alias)
    if live is None:
        raise IndexBuildError(f"no collection behind the alias {settings.alias!r}")
    description = client.create_snapshot(collection_name=live, wait=True)
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
    partial.replace(target)
    logger.info("snapshot of %s: %s (%d bytes)", live, target, target.stat().st_size)
    return target
