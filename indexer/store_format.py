"""The store format: every collection carsearch creates carries it in its metadata
(``carsearch_format``). A collection of another format was written by an older carsearch: it is
neither served nor converted nor reused, and a full build replaces it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from indexer.engines.base import StoreError

FORMAT_KEY = "carsearch_format"
STORE_FORMAT = 3
"""3: one point per photo, naming its car (``car_id``), whether it is the car's cover, and its
copy signal (``indexer.copies``)."""
REBUILD = "carsearch index --gallery PATH"


class OlderStore(StoreError):
    """A collection written by an older carsearch."""

    def __init__(self, collection: str) -> None:
        super().__init__(
            f"{collection} was written by an older carsearch: rebuild with `{REBUILD}` (a full "
            "build replaces it; cars added through the API are kept in the data folder)"
        )


def stamp() -> dict[str, Any]:
    """What a new collection's metadata starts with."""
    return {FORMAT_KEY: STORE_FORMAT}


def is_older(metadata: Mapping[str, Any]) -> bool:
    """Whether a collection with this metadata was written by an older carsearch. A store that
    keeps no collection metadata (an older Qdrant server) says nothing: not older."""
    return bool(metadata) and metadata.get(FORMAT_KEY) != STORE_FORMAT


def check(collection: str, metadata: Mapping[str, Any]) -> None:
    """OlderStore when ``collection`` (with this metadata) was written by an older carsearch."""
    if is_older(metadata):
        raise OlderStore(collection)
