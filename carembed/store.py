"""The Qdrant side shared by the indexer and the service: connection settings, the collection
schema (vector size, distance, payload fields and indexes), point ids and collection names.

The same code serves the embedded store (``QdrantClient(path=...)``, one process holds the
folder) and a Qdrant server reached by URL.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)

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
    qdrant_prefer_grpc: bool = Field(False, description="gRPC instead of REST (server only)")
    qdrant_timeout_s: float = Field(10.0, gt=0)
    qdrant_retries: int = Field(3, ge=0, description="retries of transient server errors")
    qdrant_backoff_s: float = Field(0.5, ge=0, description="first retry delay, doubling")
    alias: str = DEFAULT_ALIAS
    # Collection settings, applied when a build creates a collection.
    distance: Literal["auto", "cosine", "dot"] = Field(
        "auto",
        description="auto: cosine on a server, dot in the embedded store. The model writes unit "
        "vectors, so both give the same scores; the embedded store's cosine re-normalises "
        "every stored vector at each query (3x slower).",
    )
    hnsw_m: int | None = Field(None, ge=4)
    hnsw_ef_construct: int | None = Field(None, ge=4)
    hnsw_ef: int | None = Field(None, ge=1, description="search-time ef")
    quantization: Literal["none", "int8"] = "none"
    quantization_oversampling: float = Field(2.0, ge=1.0)
    quantization_rescore: bool = True
    on_disk: bool = Field(False, description="keep original vectors on disk (mmap)")
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    write_consistency_factor: int | None = Field(None, ge=1)

    def collection_params(self) -> dict[str, Any]:
        """Keyword arguments for ``create_collection`` from these settings."""
        from qdrant_client import models

        distance = self.distance
        if distance == "auto":
            distance = "dot" if self.embedded else "cosine"
        params: dict[str, Any] = {"on_disk": self.on_disk, "distance": distance}
        if self.hnsw_m or self.hnsw_ef_construct:
            params["hnsw_config"] = models.HnswConfigDiff(
                m=self.hnsw_m, ef_construct=self.hnsw_ef_construct
            )
        if self.quantization == "int8":
            params["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
            )
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        return params

    def search_params(self) -> Any:
        from qdrant_client import models

        quantization = (
            models.QuantizationSearchParams(
                rescore=self.quantization_rescore, oversampling=self.quantization_oversampling
            )
            if self.quantization == "int8"
            else None
        )
        if self.hnsw_ef is None and quantization is None:
            return None
        return models.SearchParams(hnsw_ef=self.hnsw_ef, quantization=quantization)

    @field_validator("qdrant_url", "qdrant_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def embedded(self) -> bool:
        return self.qdrant_url is None


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the server was unreachable, timed out, or said so (429/502/503/504).
    Client errors (bad request, not found, conflict) are not."""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in (429, 502, 503, 504)
    if isinstance(
        exc, ResponseHandlingException | httpx.TransportError | ConnectionError | TimeoutError
    ):
        return True
    code = getattr(exc, "code", None)  # grpc.RpcError
    if callable(code):
        return str(code()).endswith(("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"))
    return False


class RetryingClient:
    """A QdrantClient whose calls are retried with exponential backoff on transient errors."""

    def __init__(self, client: QdrantClient, retries: int, backoff_s: float) -> None:
        self._client, self._retries, self._backoff = client, retries, backoff_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_") or name == "close":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self._retries + 1):
                try:
                    return attr(*args, **kwargs)
                except Exception as exc:
                    if attempt == self._retries or not is_transient(exc):
                        raise
                    delay = self._backoff * 2**attempt
                    logger.warning(
                        "qdrant %s failed (%s); retry %d in %.1f s",
                        name,
                        type(exc).__name__,
                        attempt + 1,
                        delay,
                    )
                    time.sleep(delay)
            raise AssertionError("unreachable")

        return call

    def close(self) -> None:
        self._client.close()


def open_client(settings: QdrantSettings) -> QdrantClient:
    """A client for the server at ``qdrant_url``, or for the embedded folder at ``qdrant_path``."""
    from qdrant_client import QdrantClient

    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(
            url=settings.qdrant_url,
            api_key=key,
            timeout=max(1, round(settings.qdrant_timeout_s)),
            prefer_grpc=settings.qdrant_prefer_grpc,
            check_compatibility=False,
        )
        return RetryingClient(client, settings.qdrant_retries, settings.qdrant_backoff_s)  # type: ignore[return-value]
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


def create_collection(
    client: QdrantClient,
    name: str,
    dim: int,
    on_disk: bool = False,
    distance: Literal["cosine", "dot"] = "cosine",
    **params: Any,
) -> None:
    """A collection for ``dim``-d unit vectors (cosine, or dot which equals it for unit
    vectors), with payload indexes for the filters."""
    from qdrant_client import models

    metric = models.Distance.DOT if distance == "dot" else models.Distance.COSINE
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=dim, distance=metric, on_disk=on_disk or None),
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
