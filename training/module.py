"""The LightningModule: trains a backbone tail (possibly empty) + pooling + head with a
metric-learning loss, and scores each validation epoch by exact retrieval R-Precision."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from carembed.choices import LossName
from carembed.metrics import retrieval_metrics
from training.backbone_split import tail_modules
from training.losses import MetricLoss


class RetrievalModule(L.LightningModule):
    def __init__(
        self,
        tail: nn.Module,
        pool: nn.Module,
        head: nn.Module,
        *,
        loss: LossName,
        num_classes: int,
        embedding_dim: int,
        lr: float = 1e-3,
        backbone_lr: float = 1e-4,
        weight_decay: float = 1e-4,
        margin: float = 0.2,
    ) -> None:
        super().__init__()
        self.tail, self.pool, self.head = tail, pool, head
        self.criterion = MetricLoss(loss, num_classes, embedding_dim, margin)
        self.lr, self.backbone_lr, self.weight_decay = lr, backbone_lr, weight_decay
        self._val_embeddings: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.save_hyperparameters(ignore=["tail", "pool", "head"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # images or cached feature maps: channels_last convolutions are ~2x faster
            x = x.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.head(self.pool(self.tail(x))).float(), dim=1)

    def on_train_epoch_start(self) -> None:
        # Lightning keeps whatever mode modules are in (the zero-shot scoring left them in eval).
        # Few images per class: the backbone keeps its pretrained batch-norm statistics and runs
        # without stochastic depth; only the head's dropout (if any) is active.
        self.train()
        self.tail.eval()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = self.criterion(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        self._val_embeddings.append(self(x).detach().cpu())
        self._val_labels.append(y.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_embeddings:
            return
        emb = torch.cat(self._val_embeddings).numpy().astype(np.float32)
        labels = torch.cat(self._val_labels).numpy()
        self._val_embeddings.clear()
        self._val_labels.clear()
        metrics = retrieval_metrics(emb, labels)
        # Every process scored the whole validation set: the mean over processes is the figure.
        self.log("val_r_precision", metrics["r_precision"], prog_bar=True, sync_dist=True)
        self.log("val_recall_at_1", metrics["recall_at_1"], sync_dist=True)
        self.log("val_map_at_r", metrics["map_at_r"], sync_dist=True)

    def configure_optimizers(self) -> Any:
        tail_params = [
            p for m in tail_modules(self.tail) for p in m.parameters() if p.requires_grad
        ]
        groups = [
            {"params": [*self.head.parameters(), *self.pool.parameters()], "lr": self.lr},
            {"params": list(self.criterion.parameters()), "lr": self.lr * 10},
        ]
        if tail_params:
            groups.append({"params": tail_params, "lr": self.backbone_lr})
        groups = [g for g in groups if g["params"]]
        return torch.optim.AdamW(groups, weight_decay=self.weight_decay)
