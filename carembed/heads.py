"""Pooling of backbone feature maps and the trainable heads on top of them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from carembed.choices import HeadKind, PoolingKind


class GeM(nn.Module):
    """Generalised mean pooling: (mean(x^p))^(1/p) over space, p learnable (3 to start)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3))
        return pooled.pow(1.0 / self.p)


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class Pool(nn.Module):
    """(N, C, H, W) -> (N, C); a backbone that already returns vectors passes through."""

    def __init__(self, kind: PoolingKind) -> None:
        super().__init__()
        self.kind = kind
        self.inner: nn.Module = GeM() if kind == "gem" else GlobalAvgPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x
        return self.inner(x)  # type: ignore[no-any-return]


class HeadConfig(BaseModel):
    """The head's kind and sizes, as stored in ``config.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: HeadKind = "identity"
    in_dim: int = Field(gt=0)
    out_dim: int = Field(gt=0)
    hidden_dim: int = Field(
        0, ge=0, description="skip/mlp: hidden width; 0 for skip = x + W·drop(x)"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class SkipHead(nn.Module):
    """x + W·dropout(x) (Quaterion's SkipConnectionHead), or x + W2·dropout(relu(W1·x)).

    The last projection starts at zero, so an untrained skip head is the identity.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(dim, hidden_dim) if hidden_dim else None
        self.out = nn.Linear(hidden_dim or dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.hidden is None else F.relu(self.hidden(x))
        return x + self.out(self.dropout(h))  # type: ignore[no-any-return]


def build_head(config: HeadConfig) -> nn.Module:
    if config.kind == "identity":
        if config.in_dim != config.out_dim:
            raise ValueError("an identity head keeps the dim: in_dim must equal out_dim")
        return nn.Identity()
    if config.kind == "linear":
        return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.in_dim, config.out_dim))
    if config.kind == "skip":
        if config.in_dim != config.out_dim:
            raise ValueError("a skip head keeps the dim: in_dim must equal out_dim")
        return SkipHead(config.in_dim, config.hidden_dim, config.dropout)
    hidden = config.hidden_dim or config.in_dim
    return nn.Sequential(
        nn.Linear(config.in_dim, hidden),
        nn.ReLU(),
        nn.Dropout(config.dropout),
        nn.Linear(hidden, config.out_dim),
    )
