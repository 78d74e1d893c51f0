"""Class-disjoint splits, and the LightningDataModules that feed cached features or images
in P x K class-balanced batches."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from carembed.datasets import CarDataset, CarRecord
from carembed.hashing import sha256_file
from carembed.images import load_image
from carembed.preprocess import Preprocessing
from indexer import HOLDOUT, point_id

logger = logging.getLogger(__name__)


def class_disjoint_split(
    dataset: CarDataset, eval_split: str = "val", eval_fraction: float = 0.3, seed: int = 0
) -> tuple[CarDataset, CarDataset]:
    """(train, evaluation): the ``split`` column when the data has one, else seeded by class."""
    if any(r.split for r in dataset.records):
        train, evaluation = dataset.split("train"), dataset.split(eval_split)
        overlap = set(train.class_names) & set(evaluation.class_names)
        if overlap:
            raise ValueError(f"train and {eval_split} share classes: {sorted(overlap)[:5]}")
        return train, evaluation
    return holdout_classes(dataset, eval_fraction, seed)


def held_out_ids(dataset: CarDataset) -> list[str]:
    """The point ids of the photos of trained classes that training leaves out (the
    ``holdout`` split of a dataset exported from the index): the rollout gate judges on them."""
    return sorted(
        r.extra.get("photo_id") or point_id(sha256_file(r.path))
        for r in dataset.split(HOLDOUT).records
    )


def holdout_classes(
    dataset: CarDataset, fraction: float, seed: int
) -> tuple[CarDataset, CarDataset]:
    """(rest, held-out): a seeded ``fraction`` of the classes, never fewer than 2, held out."""
    classes = dataset.class_names
    rng = random.Random(seed)
    rng.shuffle(classes)
    count = max(2, round(len(classes) * fraction))
    if count >= len(classes):
        raise ValueError(f"{len(classes)} classes are too few to hold out {count}")
    held = set(classes[:count])
    return dataset.without_classes(held), dataset.only_classes(held)


def usable_records(records: Sequence[CarRecord]) -> list[CarRecord]:
    """The records whose image decodes (cheaply: JPEGs at 1/8 scale); the others are logged."""
    from carembed.images import ImageError

    usable = []
    for record in records:
        try:
            load_image(record.path, draft_size=(32, 32))
        except (ImageError, OSError) as exc:
            logger.warning("skipped %s: %s", record.relative, exc)
            continue
        usable.append(record)
    return usable


def labels_of(records: Sequence[CarRecord], classes: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[r.class_name] for r in records], dtype=np.int64)


class FeatureSet(Dataset[tuple[torch.Tensor, int]]):
    """Cached outputs; in training each item is the plain or the mirrored view at random."""

    def __init__(
        self, plain: torch.Tensor, mirrored: torch.Tensor, labels: np.ndarray, augment: bool
    ) -> None:
        self.plain, self.mirrored, self.labels, self.augment = plain, mirrored, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        use_mirror = self.augment and random.random() < 0.5
        return (self.mirrored if use_mirror else self.plain)[i].float(), int(self.labels[i])


class ImageSet(Dataset[tuple[torch.Tensor, int]]):
    """Images decoded in workers; training applies random resized crop, flip and colour jitter."""

    def __init__(
        self,
        records: Sequence[CarRecord],
        labels: np.ndarray,
        preprocessing: Preprocessing,
        augment: bool,
    ) -> None:
        from torchvision.transforms import v2

        self.records, self.labels, self.preprocessing = records, labels, preprocessing
        size = preprocessing.size
        self.augmentation = (
            v2.Compose(
                [
                    v2.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=(1.0, 2.2)),
                    v2.RandomHorizontalFlip(),
                    v2.ColorJitter(0.3, 0.3, 0.3, 0.05),
                ]
            )
            if augment
            else None
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.records[i].path, draft_size=self.preprocessing.draft_size)
        if self.augmentation is not None:
            image = self.augmentation(image)
        return torch.from_numpy(self.preprocessing.to_array(image)), int(self.labels[i])


class RetrievalData(L.LightningDataModule):
    """Training batches of P classes x K items (pytorch-metric-learning's MPerClassSampler).

    With several processes each draws its own P x K batches (seeded by its rank; DDP averages
    their gradients), and each scores the whole validation set, so every process logs the
    metric one process would: the trainer must not split these loaders
    (``use_distributed_sampler=False``)."""

    def __init__(
        self,
        train: Dataset[Any],
        train_labels: np.ndarray,
        val: Dataset[Any] | None,
        *,
        classes_per_batch: int,
        per_class: int,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.train_set, self.train_labels, self.val_set = train, train_labels, val
        self.per_class = per_class
        self.batch_size = per_class * min(classes_per_batch, len(np.unique(train_labels)))
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader[Any]:
        from pytorch_metric_learning.samplers import MPerClassSampler
        from pytorch_metric_learning.utils import common_functions

        rank = self.trainer.global_rank if self.trainer is not None else 0
        common_functions.NUMPY_RANDOM = np.random.RandomState(self.seed + rank)
        sampler = MPerClassSampler(
            self.train_labels,
            m=self.per_class,
            batch_size=self.batch_size,
            length_before_new_iter=len(self.train_labels),
        )
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        if self.val_set is None:
            return DataLoader([])  # type: ignore[arg-type]
        return DataLoader(self.val_set, batch_size=256, num_workers=self.num_workers)
