"""Typed settings of the service; every field can be set as ``CARSEARCH_<FIELD>``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from carembed.calibration import DEFAULT_ABSENT_PRIOR
from carembed.settings import ModelSettings
from indexer import OnReused, StoreSettings


class AppSettings(StoreSettings, ModelSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARSEARCH_", extra="ignore", env_ignore_empty=True
    )

    gallery: Path | None = Field(None, description="indexed in the background (embedded store)")
    reused_photos: OnReused = Field(
        "flag",
        description="a photo added that another car has: flag (add it and say so), reject (409, "
        "nothing written) or allow (not looked for); per request: on_reused",
    )
    api_key: SecretStr | None = Field(None, description="needed to add or delete cars")
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_batch: int = Field(
        0,
        ge=0,
        le=256,
        description="micro-batching: most images per forward; 0 = auto: 16 on a GPU, 8 on the "
        "CPU (a request alone never waits)",
    )
    max_wait_ms: float = Field(2.0, ge=0, description="micro-batching: wait for more requests")
    access_log: bool = Field(
        False,
        description="uvicorn's line per request (the Prometheus metrics count requests by "
        "route and status either way; the log line costs about 4% of the CPU at full load)",
    )
    follow_live_model: bool = Field(
        True,
        description="serve the model of the collection the alias names, switching when a "
        "build moves it (the model's copy is stored with the index); false: serve only the "
        "configured model, from the live or the previous collection",
    )
    model_poll_s: float = Field(2.0, gt=0, description="how often the alias is checked")
    model_retire_s: float = Field(
        30.0, ge=0, description="a replaced model is unloaded this long after the switch"
    )
    store_deadline_s: float = Field(
        3.0, gt=0, description="a request's wait for the vector store before it answers 503"
    )
    store_retry_s: float = Field(
        5.0, gt=0, description="start-up work waits this long between tries of an absent store"
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="how long shutdown waits for the gallery run's current batch"
    )
    store_workers: int = Field(8, ge=1, le=64, description="threads for vector store calls")
    decode_workers: int = Field(
        2, ge=1, le=64, description="images decoded at once (bounds the memory of decoding)"
    )
    decode_pixel_budget: int = Field(
        16_000_000,
        gt=0,
        description="pixels decoded at once across all requests (JPEGs count at their reduced "
        "decode size, other formats whole: a 36-Mpx WebP peaks at about 15 bytes a pixel); a "
        "photo waits until its pixels fit, one needing more alone is refused (422)",
    )
    decode_queue_pixels: int = Field(
        400_000_000,
        ge=0,
        description="pixels that may wait for the decode budget; past it a photo gets 503",
    )
    identify_k: int | None = Field(
        None, ge=1, le=100, description="neighbours that vote; unset: the model's calibrated k"
    )
    identify_temperature: float | None = Field(
        None, gt=0, description="vote weights exp(score / t); unset: the model's calibrated t"
    )
    absent_prior: float = Field(
        DEFAULT_ABSENT_PRIOR,
        ge=0.0,
        le=1.0,
        description="the share of identifications whose car model the gallery lacks (a "
        "request's absent_prior overrides it); 0: the gallery holds every model asked about",
    )
    read_api_key: SecretStr | None = Field(
        None, description="when set, searches need it in X-API-Key (writes keep API_KEY)"
    )
    max_batch_images: int = Field(16, ge=1, le=256, description="photos in one batch search")
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="request line and headers together; larger: 431"
    )
    max_url_bytes: int = Field(8 * 1024, ge=256, description="request target; longer: 414")
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="an unfinished request (head or body) that sends nothing this long: 408",
    )
    keep_alive_s: float = Field(5.0, gt=0, description="an idle keep-alive connection closes")
    max_connections: int | None = Field(
        1000, ge=1, description="open connections and requests at once; more: 503"
    )
    cors_origins: list[str] = Field(default_factory=list)
    thumb_size: int = Field(256, ge=32, le=1024)

    @property
    def batch_limit(self) -> int:
        if self.max_batch:
            return self.max_batch
        return 8 if self.device == "cpu" else 16

    @model_validator(mode="after")
    def _request_timeout_within_the_deadline(self) -> AppSettings:
        """A store call a request makes gives up by the request's deadline (the client counts
        whole seconds, at least one): no store thread keeps waiting long after the 503."""
        self.qdrant_request_timeout_s = min(self.qdrant_request_timeout_s, self.store_deadline_s)
        return self

    @model_validator(mode="after")
    def _no_wildcard_cors(self) -> AppSettings:
        if "*" in self.cors_origins:
            raise ValueError("CORS with credentials never allows '*': list the origins")
        return self
