"""Which model a command runs and how, read the same way by every command: ``--model`` or
``CARSEARCH_MODEL_DIR`` (and ``CARSEARCH_DEVICE``, ``ENGINE``, ``THREADS``, ``INT8``,
``MAX_PIXELS``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from carembed.choices import EngineChoice
from carembed.images import ImageLimits

if TYPE_CHECKING:
    from carembed.embedder import Embedder
    from carembed.model import CarEmbeddingModel


class ModelSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARSEARCH_", extra="ignore", env_ignore_empty=True
    )

    model_dir: Path | None = Field(
        None,
        description="servable model folder; unset: the shipped car model; zero-shot: the "
        "ImageNet backbone without fine-tuning",
    )
    device: str = "cpu"
    engine: EngineChoice = Field("auto", description="auto: ONNX Runtime on CPU, PyTorch on a GPU")
    threads: int | None = None
    int8: bool = Field(
        True,
        description="engine auto on CPU runs the model's int8 graph when it passed the int8 "
        "check (carsearch train / carsearch model quantize); false: always float32",
    )
    max_pixels: int = Field(
        40_000_000, gt=0, description="larger images are refused from their header, undecoded"
    )

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels)

    def embedder(self, model: CarEmbeddingModel, **options: Any) -> Embedder:
        """``model`` ready to run as these settings say (device, engine, threads, int8 graph,
        image limits); ``options``: the Embedder's others (batch size, ONNX folder)."""
        from carembed.embedder import Embedder

        return Embedder(
            model,
            device=self.device,
            threads=self.threads,
            engine=self.engine,
            limits=self.limits,
            int8=self.int8,
            **options,
        )
