"""The car embedding model: backbone -> pooling -> head -> L2-normalised float32 vector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from carembed.backbones import DEFAULT_BACKBONE, get_backbone
from carembed.choices import HeadKind, PoolingKind
from carembed.config import BackboneConfig, ModelConfig
from carembed.heads import HeadConfig, Pool, build_head
from carembed.identity import model_version
from carembed.preprocess import Preprocessing


class CarEmbeddingModel(nn.Module):
    """images (N, 3, S, S), normalised per ``config.preprocessing`` -> (N, D) unit vectors."""

    config: ModelConfig
    source_dir: Path | None
    """The model folder it was loaded from (where its int8 graph lives); None: built here."""

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.source_dir = None
        self.backbone = backbone
        self.pool = Pool(config.backbone.pooling)
        self.head = build_head(config.head)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features, before the head."""
        return self.pool(self.backbone(images))  # type: ignore[no-any-return]

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Head + L2 normalisation on pooled features (training on cached features uses this)."""
        return F.normalize(self.head(features).float(), p=2.0, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.config.test_time_flip:
            return self.embed_features(self.features(images))
        both = self.embed_features(self.features(torch.cat([images, images.flip(-1)])))
        plain, mirrored = both.chunk(2)
        return F.normalize(plain + mirrored, p=2.0, dim=1)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.config.preprocessing

    def artifact_state(self) -> dict[str, torch.Tensor]:
        """The tensors ``model.safetensors`` holds: head, pooling, and the backbone if stored."""
        state = self.state_dict()
        keep = ("head.", "pool.") + (("backbone.",) if self.config.backbone.in_artifact else ())
        return {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(keep)}

    def version(self) -> str:
        """The model version: what decides the vectors, hashed (``carembed.identity``)."""
        return model_version(self.config, self.artifact_state())

    def update_config(self, **changes: Any) -> None:
        """Replace fields of this model's config in place (e.g. training metadata before
        export)."""
        self.config = self.config.model_copy(update=changes)


def build_model(
    backbone: str = DEFAULT_BACKBONE,
    *,
    head: HeadKind = "identity",
    embedding_dim: int | None = None,
    hidden_dim: int = 0,
    dropout: float = 0.0,
    pooling: PoolingKind = "avg",
    weights_path: Path | None = None,
    preprocessing: Preprocessing | None = None,
) -> CarEmbeddingModel:
    """A new model: pretrained backbone plus a fresh head (identity by default)."""
    spec = get_backbone(backbone)
    built = spec.build(weights_path)
    out_dim = embedding_dim or spec.dim
    config = ModelConfig(
        backbone=BackboneConfig(
            name=spec.name,
            weights_source=built.weights.source,
            weights_sha256=built.weights.sha256,
            pooling=pooling,
            in_artifact=weights_path is not None,
        ),
        head=HeadConfig(
            kind=head, in_dim=spec.dim, out_dim=out_dim, hidden_dim=hidden_dim, dropout=dropout
        ),
        embedding_dim=out_dim,
        preprocessing=preprocessing or spec.preprocessing,
    )
    return CarEmbeddingModel(config, built.module).eval()
