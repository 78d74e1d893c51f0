"""The identity of a model's vectors: what decides them, hashed, and nothing else.

Two ids, one owner:

- the **model version** (``efficientnetlite0-skip-89bf62331dcc``) hashes the backbone (name,
  pretrained weights' sha256, pooling), the head's shape, the embedding size, the preprocessing,
  test-time flip and every stored tensor. The training record and the identification
  calibration in ``config.json`` are descriptive: re-fitting the calibration keeps the version
  (and the index). Model copies, int8 graphs and ``carsearch model`` commands use it.
- the **embedding version** (``…-89bf62331dcc-f32`` / ``…-int8``) is the model version and the
  precision of the graph that ran it: float32 (PyTorch or ONNX) and int8 give different
  vectors. Collections, payloads and API answers carry it; a collection holds the vectors of
  one embedding version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from carembed.config import ModelConfig

Precision = Literal["float32", "int8"]
PRECISIONS: dict[Precision, str] = {"float32": "f32", "int8": "int8"}
"""Each precision and the suffix it gives an embedding version."""


def vector_spec(config: ModelConfig) -> dict[str, object]:
    """The part of a model config that decides its vectors."""
    backbone = config.backbone
    spec: dict[str, object] = {
        "backbone": {
            "name": backbone.name,
            "pooling": backbone.pooling,
            # Weights stored in the artifact are hashed with the other tensors.
            "weights_sha256": None if backbone.in_artifact else backbone.weights_sha256,
        },
        "head": config.head.model_dump(mode="json", exclude={"dropout"}),
        "embedding_dim": config.embedding_dim,
        "preprocessing": config.preprocessing.model_dump(mode="json"),
        "test_time_flip": config.test_time_flip,
    }
    return spec


def model_version(config: ModelConfig, tensors: Mapping[str, torch.Tensor]) -> str:
    """``<backbone>-<head>-<12 hex>``: the same vectors-deciding config and tensors, the same
    version."""
    digest = hashlib.sha256(
        json.dumps(vector_spec(config), sort_keys=True, separators=(",", ":")).encode()
    )
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    backbone = config.backbone.name.replace("_", "")
    return f"{backbone}-{config.head.kind}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class EmbeddingVersion:
    model_version: str
    precision: Precision

    def __str__(self) -> str:
        return f"{self.model_version}-{PRECISIONS[self.precision]}"


def embedding_version(model_version: str, precision: Precision) -> str:
    return str(EmbeddingVersion(model_version, precision))


def parse_embedding_version(version: str | None) -> EmbeddingVersion | None:
    """The model version and precision of an embedding version; None for anything else (a
    collection an earlier carsearch named by its model version alone)."""
    model, dash, suffix = (version or "").rpartition("-")
    precision = {text: name for name, text in PRECISIONS.items()}.get(suffix)
    if not dash or precision is None or model.count("-") < 2:
        return None
    return EmbeddingVersion(model, precision)
