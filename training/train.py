"""``carsearch train``: fine-tune on the training classes, choose the epoch count on held-out
training classes, refit on all of them, and export the servable model folder.

The evaluation classes (the ``val`` split) are never read here.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import Dataset

from carembed.artifact import save_model
from carembed.backbones import get_backbone
from carembed.datasets import CarDataset, read_dataset
from carembed.model import CarEmbeddingModel, build_model
from carembed.quantize import check_int8
from training.backbone_split import split_backbone
from training.config import TrainConfig
from training.data import (
    FeatureSet,
    ImageSet,
    RetrievalData,
    class_disjoint_split,
    held_out_ids,
    holdout_classes,
    labels_of,
    usable_records,
)
from training.features import CachedFeatures, cached_features
from training.identification import calibrate
from training.module import RetrievalModule
from training.quiet import quiet_lightning
from training.record import dataset_fingerprint, git_commit

logger = logging.getLogger(__name__)


class _Views:
    """What the module trains on: the tail/pool/head modules and the datasets per class set."""

    def __init__(self, config: TrainConfig, model: CarEmbeddingModel, train: CarDataset) -> None:
        self.config = config
        self.model = model
        self.classes = train.class_names
        self.tail: nn.Module
        self.pool: nn.Module
        if config.recipe == "frozen":
            extractor: nn.Module = nn.Sequential(model.backbone, model.pool)
            self.tail, self.pool = nn.Identity(), nn.Identity()
        elif config.recipe == "partial":
            extractor, self.tail = split_backbone(model.backbone, config.trainable_blocks)
            self.pool = model.pool
        else:
            extractor = nn.Identity()
            self.tail, self.pool = model.backbone, model.pool
            if config.trainable_blocks:
                prefix, _ = split_backbone(model.backbone, config.trainable_blocks)
                for p in prefix.parameters():
                    p.requires_grad_(False)
        self.records = train.records
        self.features: CachedFeatures | None = None
        self.cache_hit = False
        if config.recipe != "full":
            key: dict[str, object] = {
                "backbone": config.backbone,
                "weights": model.config.backbone.weights_sha256,
                "cut": f"{config.recipe}:{config.trainable_blocks}:{config.pool}",
            }
            self.features, self.cache_hit = cached_features(
                extractor,
                train.records,
                model.preprocessing,
                key,
                config.cache_dir,
                num_workers=config.workers,
            )
            self.records = [train.records[i] for i in self.features.kept]
        else:
            self.records = usable_records(train.records)
        self.labels = labels_of(self.records, self.classes)

    def subset(self, class_names: set[str], augment: bool) -> tuple[Dataset[Any], np.ndarray]:
        idx = np.array([i for i, r in enumerate(self.records) if r.class_name in class_names])
        labels = self.labels[idx]
        if self.features is not None:
            t = torch.from_numpy(idx)
            return FeatureSet(
                self.features.plain[t], self.features.mirrored[t], labels, augment
            ), labels
        records = [self.records[i] for i in idx]
        return ImageSet(records, labels, self.model.preprocessing, augment), labels


def _module(config: TrainConfig, views: _Views, model: CarEmbeddingModel) -> RetrievalModule:
    """A fresh LightningModule over the shared modules, in training mode."""
    module = RetrievalModule(
        views.tail,
        views.pool,
        model.head,
        loss=config.loss,
        num_classes=len(views.classes),
        embedding_dim=model.config.embedding_dim,
        lr=config.lr,
        backbone_lr=config.backbone_lr,
        weight_decay=config.weight_decay,
        margin=config.margin,
    )
    return module.to(memory_format=torch.channels_last).train()


def _trainer(config: TrainConfig, run_dir: Path, epochs: int, validate: bool) -> L.Trainer:
    callbacks: list[Any] = []
    if validate:
        callbacks = [
            EarlyStopping("val_r_precision", mode="max", patience=config.patience),
            ModelCheckpoint(
                run_dir / "checkpoints",
                monitor="val_r_precision",
                mode="max",
                save_top_k=1,
                filename="best-{epoch}",
            ),
        ]
    gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    devices = config.devices
    multi = isinstance(devices, int) and devices > 1
    return L.Trainer(
        max_epochs=epochs,
        accelerator=config.accelerator,
        devices=devices,
        strategy="ddp" if multi else "auto",
        use_distributed_sampler=False,  # RetrievalData: P x K per process, validation whole
        precision="bf16-mixed" if gpu and config.recipe != "frozen" else "32-true",
        deterministic=config.deterministic,
        callbacks=callbacks,
        logger=CSVLogger(run_dir, name="logs"),
        enable_checkpointing=validate,
        limit_val_batches=None if validate else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        enable_model_summary=False,
    )


def _score(module: RetrievalModule, dataset: Dataset[Any]) -> float:
    """R-Precision of the module as it is (before training: the untrained head)."""
    from torch.utils.data import DataLoader

    from carembed.metrics import retrieval_metrics

    module.eval()
    embeddings, labels = [], []
    with torch.inference_mode():
        for x, y in DataLoader(dataset, batch_size=256):
            embeddings.append(module(x))
            labels.append(y)
    return retrieval_metrics(torch.cat(embeddings).numpy(), torch.cat(labels).numpy())[
        "r_precision"
    ]


def _data(
    config: TrainConfig, train: Dataset[Any], labels: np.ndarray, val: Dataset[Any] | None
) -> RetrievalData:
    return RetrievalData(
        train,
        labels,
        val,
        classes_per_batch=config.classes_per_batch,
        per_class=config.per_class,
        num_workers=config.workers if config.recipe == "full" else 0,  # cached tensors: none
        seed=config.seed,
    )


def _fresh(config: TrainConfig) -> CarEmbeddingModel:
    preprocessing = get_backbone(config.backbone).preprocessing
    if config.image_size is not None:
        preprocessing = preprocessing.model_copy(update={"size": config.image_size})
    model = build_model(
        config.backbone,
        head=config.head,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        pooling=config.pool,
        preprocessing=preprocessing,
    )
    model.update_config(test_time_flip=config.test_time_flip)
    return model


@dataclass(frozen=True)
class _Parts:
    """The data of a run: all of it, the classes trained on, and those split into the fit
    classes and the selection classes (never trained on before the refit)."""

    dataset: CarDataset
    train_set: CarDataset
    fit_part: CarDataset
    select_part: CarDataset

    @classmethod
    def of(cls, config: TrainConfig) -> _Parts:
        dataset = read_dataset(config.data)
        if config.all_classes:
            train_set = dataset
        else:
            train_set, _ = class_disjoint_split(dataset, config.eval_split, seed=config.seed)
        fit_part, select_part = holdout_classes(train_set, config.select_fraction, config.seed)
        logger.info(
            "training classes %d (fit %d, selection %d), images %d",
            len(train_set.class_names),
            len(fit_part.class_names),
            len(select_part.class_names),
            len(train_set.records),
        )
        return cls(dataset, train_set, fit_part, select_part)


@dataclass
class _Selected:
    """The fit on the fit classes, at its best epoch on the selection classes."""

    model: CarEmbeddingModel
    views: _Views
    trainer: L.Trainer
    zero_shot: float
    score: float
    epoch: int  # 0-based


def _select(config: TrainConfig, parts: _Parts, run_dir: Path) -> _Selected:
    model = _fresh(config)
    views = _Views(config, model, parts.train_set)
    fit_data, fit_labels = views.subset(set(parts.fit_part.class_names), augment=True)
    select_data, _ = views.subset(set(parts.select_part.class_names), augment=False)
    zero_shot = _score(_module(config, views, model), select_data)
    module = _module(config, views, model)
    trainer = _trainer(config, run_dir, config.max_epochs, validate=True)
    trainer.fit(module, _data(config, fit_data, fit_labels, select_data))
    checkpoint = trainer.checkpoint_callback
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path
    score = float(checkpoint.best_model_score or 0.0)
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    epoch = int(best["epoch"])
    logger.info(
        "selection R-Precision %.4f (zero-shot %.4f) at epoch %d", score, zero_shot, epoch + 1
    )
    module.load_state_dict(best["state_dict"])  # the selection model, never trained on these
    return _Selected(model, views, trainer, zero_shot, score, epoch)


def _refit(
    config: TrainConfig, parts: _Parts, run_dir: Path, epochs: int
) -> tuple[CarEmbeddingModel, _Views, L.Trainer]:
    """A fresh model trained on every training class for the selected number of epochs."""
    model = _fresh(config)
    views = _Views(config, model, parts.train_set)  # cache hit: same files, same cut
    all_data, all_labels = views.subset(set(parts.train_set.class_names), augment=True)
    trainer = _trainer(config, run_dir, epochs, validate=False)
    trainer.fit(_module(config, views, model), _data(config, all_data, all_labels, None))
    return model, views, trainer


def _metadata(
    config: TrainConfig, parts: _Parts, views: _Views, selected: _Selected, started: float
) -> dict[str, Any]:
    trained = parts.train_set if config.refit else parts.fit_part
    metadata = {
        "recipe": config.recipe,
        "data": config.data.resolve().name,
        "dataset_fingerprint": dataset_fingerprint(parts.train_set),
        # The classes the weights trained on: without the refit, not the selection classes.
        "class_names": trained.class_names,
        "classes": len(trained.class_names),
        "selection_classes": parts.select_part.class_names,
        "photos": len(views.records),
        "seed": config.seed,
        "metrics": {
            "selection_r_precision": selected.score,
            "selection_zero_shot": selected.zero_shot,
        },
        "best_epoch": selected.epoch + 1,
        "refit": config.refit,
        "hyperparameters": json.loads(config.model_dump_json(exclude={"data", "out"})),
        "git_commit": git_commit(),
        "seconds": round(time.perf_counter() - started, 1),
        "feature_cache_hit": views.cache_hit,
    }
    if held_out := held_out_ids(parts.dataset):
        metadata["held_out"] = held_out
    return metadata


def train(config: TrainConfig) -> tuple[CarEmbeddingModel, dict[str, Any]]:
    """Runs the whole recipe, exports to ``config.out``; returns the model and its metadata."""
    started = time.perf_counter()
    quiet_lightning()
    L.seed_everything(config.seed, workers=True)
    parts = _Parts.of(config)
    run_dir = config.work_dir / time.strftime("%Y%m%d-%H%M%S")
    selected = _select(config, parts, run_dir)
    # With several processes (DDP) each holds the same weights: the calibration, the model
    # folder and the int8 check are made once, by rank zero, while the others wait.
    lead = selected.trainer.is_global_zero
    identification = calibrate(selected.model, parts.select_part) if lead else None
    selected.trainer.strategy.barrier("calibrated")
    model, views, last = selected.model, selected.views, selected.trainer
    if config.refit:
        model, views, last = _refit(config, parts, run_dir, selected.epoch + 1)
    metadata = _metadata(config, parts, views, selected, started)
    if identification is not None:
        metadata["identification"] = identification.model_dump(mode="json")
    backbone = model.config.backbone.model_copy(update={"in_artifact": config.recipe != "frozen"})
    model.update_config(backbone=backbone, training=metadata)
    model = model.cpu().eval()
    if lead:
        _export(config, model, parts.select_part, parts.fit_part, started)
    last.strategy.barrier("exported")
    return model, metadata


def _export(
    config: TrainConfig,
    model: CarEmbeddingModel,
    select_part: CarDataset,
    fit_part: CarDataset,
    started: float,
) -> None:
    """Write the model folder and, when asked, its int8 graph (checked on the held-out
    training classes, calibrated on the others)."""
    version = save_model(model, config.out)
    model.source_dir = config.out
    if config.int8_check:
        with tempfile.TemporaryDirectory(prefix="carsearch-onnx-") as onnx_dir:
            check_int8(
                model,
                Path(onnx_dir),
                select_part.records,
                fit_part.records,
                f"{len(select_part.class_names)} held-out training classes "
                f"({len(select_part.records)} photos)",
            )
    logger.info("exported %s to %s (%.0f s)", version, config.out, time.perf_counter() - started)
