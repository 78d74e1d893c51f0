"""A model's ``config.json``: what rebuilds the model and feeds it (``carembed.artifact`` reads
and writes it, ``carembed.identity`` hashes what decides the vectors)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from carembed.choices import PoolingKind
from carembed.heads import HeadConfig
from carembed.preprocess import Preprocessing

FORMAT_VERSION = 1


class BackboneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weights_source: str
    weights_sha256: str
    pooling: PoolingKind = "avg"
    in_artifact: bool = Field(
        False,
        description="the backbone's weights are stored in model.safetensors "
        "(fine-tuned, or built from a local weights file)",
    )


class ModelConfig(BaseModel):
    """Everything needed to rebuild the model and feed it, as stored in ``config.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    backbone: BackboneConfig
    head: HeadConfig
    embedding_dim: int
    preprocessing: Preprocessing
    test_time_flip: bool = Field(
        False,
        description="the embedding of a photo is the normalised mean of the photo's and its "
        "mirror's (twice the compute per photo); every engine runs it inside the model",
    )
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="descriptive: the training record and the identification calibration "
        "(not part of the model version)",
    )
