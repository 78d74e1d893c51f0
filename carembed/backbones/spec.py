"""What every backbone declares: its input preprocessing, output dim, and how to build it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from carembed.preprocess import Preprocessing


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from, and the sha256 of that file."""

    source: str
    sha256: str


@dataclass(frozen=True)
class BuiltBackbone:
    """Feature extractor: images (N, 3, H, W) -> maps (N, dim, h, w) or vectors (N, dim)."""

    module: nn.Module
    weights: WeightsInfo


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    preprocessing: Preprocessing
    offline: bool
    description: str
    build: Callable[[Path | None], BuiltBackbone]
    """Build with the default weights (``None``) or a local state dict file."""
    architecture: Callable[[], nn.Module]
    """The same feature extractor, randomly initialised (its weights come from elsewhere)."""
