"""Metric-learning losses by name, from pytorch-metric-learning (not re-implemented here)."""

from __future__ import annotations

import torch
from torch import nn

from carembed.choices import LossName


class MetricLoss(nn.Module):
    """loss(embeddings, labels) with the miner that belongs to it."""

    def __init__(self, name: LossName, num_classes: int, dim: int, margin: float = 0.2) -> None:
        super().__init__()
        from pytorch_metric_learning import distances, losses, miners

        self.name = name
        self.miner: nn.Module | None = None
        cosine = distances.CosineSimilarity()
        if name == "multi_similarity":
            self.loss: nn.Module = losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
            self.miner = miners.MultiSimilarityMiner(epsilon=0.1)
        elif name == "proxy_anchor":
            self.loss = losses.ProxyAnchorLoss(
                num_classes=num_classes, embedding_size=dim, margin=0.1, alpha=32
            )
        else:
            self.loss = losses.TripletMarginLoss(margin=margin, distance=cosine)
            if name == "triplet_batch_hard":
                self.miner = miners.BatchHardMiner(distance=cosine)
            elif name == "triplet_semi_hard":
                self.miner = miners.TripletMarginMiner(
                    margin=margin, type_of_triplets="semihard", distance=cosine
                )
            else:
                self.miner = miners.TripletMarginMiner(
                    margin=margin, type_of_triplets="all", distance=cosine
                )

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pairs = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, pairs)  # type: ignore[no-any-return]
