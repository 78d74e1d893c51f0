"""Training on several processes (DDP over gloo on the CPU): every process scores the whole
validation set, so two processes log the metric one process gets; a loader split across the
processes (Lightning's default) would not."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
from torch import nn
from torch.multiprocessing import ProcessExitedException
from torch.utils.data import TensorDataset

from training.data import RetrievalData
from training.module import RetrievalModule


def _validate(module: RetrievalModule, data: RetrievalData, devices: int, split: bool) -> float:
    """The validation metric of ``devices`` processes. A spawned gloo worker sometimes aborts as
    it exits ("terminate called without an active exception": a transport thread outlives the
    interpreter); such a run is made again, up to three times in all."""
    aborted = 0
    while True:
        try:
            return _validate_once(module, data, devices, split)
        except ProcessExitedException as exc:
            aborted += 1
            if exc.signal_name != "SIGABRT" or aborted == 3:
                raise


def _validate_once(
    module: RetrievalModule, data: RetrievalData, devices: int, split: bool
) -> float:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        use_distributed_sampler=split,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    results: list[dict[str, Any]] = trainer.validate(module, datamodule=data, verbose=False)
    return float(results[0]["val_r_precision"])


@pytest.mark.slow
def test_two_processes_log_the_validation_metric_of_one() -> None:
    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(7)  # 6 classes x 7 items: 42, uneven halves
    features = torch.randn(len(labels), 16) + 1.5 * torch.randn(6, 16)[labels]
    module = RetrievalModule(
        nn.Identity(),
        nn.Identity(),
        nn.Linear(16, 8),
        loss="multi_similarity",
        num_classes=6,
        embedding_dim=8,
    )
    dataset = TensorDataset(features, labels)
    data = RetrievalData(dataset, labels.numpy(), dataset, classes_per_batch=4, per_class=2)
    one = _validate(module, data, devices=1, split=False)
    assert _validate(module, data, devices=2, split=False) == pytest.approx(one, abs=1e-6)
    # Split across the processes, each scores its half: the figure is another one.
    assert _validate(module, data, devices=2, split=True) != pytest.approx(one, abs=1e-6)
