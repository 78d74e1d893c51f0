"""The store engines: what the car index needs from a store (``indexer.engines.base``) and the
two that provide it, each in its own package (``edge``: embedded; ``qdrant_server``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the engines' modules import this package first: it imports none of theirs
    from indexer.engines.base import Engine
    from indexer.settings import StoreSettings


def open_engine(settings: StoreSettings) -> Engine:
    """The embedded engine on ``settings.qdrant_path``, or a Qdrant server's client."""
    if settings.embedded:
        from indexer.engines.edge.store import EdgeEngine

        return EdgeEngine(settings)
    from indexer.engines.qdrant_server.store import open_server

    return open_server(settings)
