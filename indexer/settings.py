"""Where the car index lives and how its collections are made: one settings class for the CLI,
the service and the benchmarks (env ``CARSEARCH_<NAME>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.fields import FieldSchema, parse_declared
from indexer.gate import GatePolicy
from indexer.layout import DataLayout
from indexer.versions import DEFAULT_ALIAS, validate_alias

Distance = Literal["cosine", "dot"]
Quantization = Literal["none", "int8"]


class StoreSettings(BaseSettings):
    """The store (an embedded Qdrant Edge folder, or a Qdrant server by URL) and the settings
    applied to the collections a build creates."""

    model_config = SettingsConfigDict(
        env_prefix="CARSEARCH_", extra="ignore", env_ignore_empty=True
    )

    qdrant_url: str | None = Field(None, description="a Qdrant server; unset: the embedded store")
    qdrant_path: Path = Field(Path("data/qdrant"), description="the embedded store's folder")
    qdrant_api_key: SecretStr | None = None
    qdrant_prefer_grpc: bool = Field(False, description="gRPC instead of REST (server only)")
    qdrant_timeout_s: float = Field(10.0, gt=0, description="the client timeout of a store call")
    qdrant_request_timeout_s: float = Field(
        3.0,
        gt=0,
        description="the client timeout of a store call an HTTP request makes (the service "
        "keeps it within its store deadline)",
    )
    qdrant_retries: int = Field(3, ge=0, description="retries of transient server errors")
    qdrant_backoff_s: float = Field(0.5, ge=0, description="first retry delay, doubling")
    data_dir: Path = Field(
        Path("data"),
        description="cars added through the API (uploads/, tombstones.json), read by builds: "
        "shared by the service replicas and the indexer",
    )
    alias: str = DEFAULT_ALIAS
    attributes: str = Field(
        "",
        description="the attributes searches can filter on and facets count, with their kinds: "
        '"price:float,mileage:integer,color:keyword,available:bool" (each gets a payload index)',
    )
    gate: bool = Field(
        True, description="a build moves the alias to another model only past the quality gate"
    )
    gate_margin: float = Field(0.005, ge=0, description="largest R-Precision drop allowed")
    gate_photos: int = Field(2000, ge=2, description="labelled gallery photos the gate scores")
    gate_force: bool = Field(False, description="go live whatever the gate says (recorded)")
    max_photos_per_car: int = Field(30, ge=1, le=1000, description="most photos of one car")
    page_beam: int = Field(
        512,
        ge=16,
        le=100_000,
        description="the HNSW width of searches for cars: pages of one query up to this many "
        "photos deep read one ranking (no car twice, none skipped); wider is slower",
    )
    distance: Distance = Field(
        "cosine", description="the model writes unit vectors: dot gives the same scores"
    )
    hnsw_m: int | None = Field(None, ge=4, description="HNSW edges per node (engine default 16)")
    hnsw_ef_construct: int | None = Field(None, ge=4, description="engine default 100")
    hnsw_ef: int | None = Field(None, ge=1, description="search-time ef")
    quantization: Quantization = "none"
    quantization_oversampling: float = Field(2.0, ge=1.0)
    quantization_rescore: bool = True
    on_disk: bool = Field(False, description="keep original vectors on disk (mmap)")
    shard_number: int | None = Field(None, ge=1, description="server only")
    replication_factor: int | None = Field(None, ge=1, description="server only")
    write_consistency_factor: int | None = Field(None, ge=1, description="server only")

    @field_validator("alias")
    @classmethod
    def _valid_alias(cls, value: str) -> str:
        return validate_alias(value)

    @field_validator("attributes")
    @classmethod
    def _valid_attributes(cls, value: str) -> str:
        parse_declared(value)
        return value

    def gate_policy(self) -> GatePolicy | None:
        """The rollout quality gate of builds (None: no gate)."""
        return (
            GatePolicy(self.gate_margin, self.gate_photos, self.gate_force) if self.gate else None
        )

    @property
    def layout(self) -> DataLayout:
        """Every path under ``data_dir``."""
        return DataLayout(self.data_dir)

    def fields(self) -> FieldSchema:
        return FieldSchema.of(self.attributes)

    def search_tuning(self, beam: int | None = None) -> tuple[int | None, dict[str, object] | None]:
        """(search-time ``hnsw_ef``, at least ``beam`` when given; quantization search options
        or None); both engines build their own parameter objects from these."""
        quantization: dict[str, object] | None = (
            {"rescore": self.quantization_rescore, "oversampling": self.quantization_oversampling}
            if self.quantization == "int8"
            else None
        )
        if beam is not None:
            return max(self.hnsw_ef or 0, beam), quantization
        return self.hnsw_ef, quantization

    @property
    def embedded(self) -> bool:
        return self.qdrant_url is None

    @property
    def location(self) -> str:
        """Where the store is, for messages (never the API key)."""
        return self.qdrant_url or str(self.qdrant_path)
