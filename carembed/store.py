"""The Qdrant side shared by the indexer and the service: connection settings, the collection
schema (vector size, distance, payload fields and indexes), point ids and collection names.

The same code serves the embedded store (``QdrantClient(path=...)``, one process holds the
folder) and a Qdrant server reached by URL.
"""

from __future__ import annotations

import re
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

DEFAULT_ALIAS = "cars"
PREVIOUS_SUFFIX = "__previous"
PAYLOAD_INDEXES = {"make": "keyword", "model": "keyword", "body": "keyword", "year": "integer"}
_NAMESPACE = uuid.UUID("6f1c3f59-5d8e-4f8e-9a43-0c7c3a1f2b10")


class StoreError(RuntimeError):
    """The vector store cannot be used: locked by another process, unreachable, misconfigured."""


class QdrantSettings(BaseSettings):
    """Where the vectors live (env: ``CARSEARCH_QDRANT_URL``, ``CARSEARCH_QDRANT_API_KEY``…)."""

    model_config = SettingsConfigDict(env_prefix="CARSEARCH_", extra="ignore")

    qdrant_url: str | None = Field(None, description="a Qdrant server; unset: the embedded store")
    qdrant_path: Path = Field(Path("data/qdrant"), description="the embedded store's folder")
    qdrant_api_key: SecretStr | None = None
    qdrant_timeout_s: float = 10.0
    alias: str = DEFAULT_ALIAS

    @property
    def embedded(self) -> bool:
        return self.qdrant_url is None


def open_client(settings: QdrantSettings) -> QdrantClient:
    """A client for the server at ``qdrant_url``, or for the embedded folder at ``qdrant_path``."""
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(
            url=settings.qdrant_url, api_key=key, timeout=int(settings.qdrant_timeout_s)
        )
    if str(settings.qdrant_path) == ":memory:":
        return QdrantClient(location=":memory:")
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise StoreError(
            f"the embedded store {settings.qdrant_path} is open in another process "
            "(a running `carsearch serve`?). Stop that process first, or let the service index "
            "the gallery itself (`carsearch serve --gallery PATH`), or use a Qdrant server "
            "(--qdrant-url)."
        ) from exc


def point_id(sha256_hex: str) -> str:
    """The same image bytes always get the same point id."""
    return str(uuid.uuid5(_NAMESPACE, sha256_hex))


def collection_name(alias: str, model_version: str, when: datetime | None = None) -> str:
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")
    return f"{alias}__{model_version}__{stamp}"


_NAME = re.compile(r"^(?P<alias>.+?)__(?P<version>[^_].*?)__(?P<stamp>\d{8}T\d{6,12})$")


def parse_collection_name(name: str) -> tuple[str, str] | None:
    """(alias, model version) of a collection this project made, or None."""
    match = _NAME.match(name)
    return (match["alias"], match["version"]) if match else None


def create_collection(client: QdrantClient, name: str, dim: int, **params: Any) -> None:
    """A collection for ``dim``-d unit vectors: cosine distance, payload indexes for filters."""
    from qdrant_client import models

    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
        **params,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # local mode: "payload indexes have no effect"
        for field, schema in PAYLOAD_INDEXES.items():
            client.create_payload_index(name, field, field_schema=schema)  # type: ignore[arg-type]


def resolve_alias(client: QdrantClient, alias: str) -> str | None:
    for description in client.get_aliases().aliases:
        if description.alias_name == alias:
            return str(description.collection_name)
    return None
