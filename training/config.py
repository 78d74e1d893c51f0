"""What a training run is given: ``TrainConfig``, whose fields are also ``carsearch train``'s
flags (generated, with these descriptions, by ``carsearch.train_commands``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from carembed.choices import HeadKind, LossName, PoolingKind, Recipe


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Path
    out: Path
    recipe: Recipe = Field(
        "partial",
        description="frozen: head on cached features; partial: last blocks + head on cached "
        "maps; full: backbone from images with augmentation",
    )
    backbone: str = "efficientnet_lite0"
    loss: LossName = "multi_similarity"
    head: HeadKind = "skip"
    hidden_dim: int = Field(512, ge=0)
    int8_check: bool = Field(
        True,
        description="at export, build the int8 graph and keep it in the model folder when it "
        "passes the int8 check on the held-out training classes",
    )
    test_time_flip: bool = Field(
        True,
        description="the exported model averages each photo with its mirror (+0.014 val "
        "R-Precision for twice the compute per photo; README)",
    )
    image_size: int | None = Field(
        256,
        ge=32,
        description="input side in pixels (256: +0.013 val R-Precision over 224 for 1.4x the "
        "compute); None: the backbone's own (224 for Lite0)",
    )
    embedding_dim: int | None = None
    dropout: float = Field(0.0, ge=0, lt=1)
    pooling: PoolingKind | None = Field(
        None, description="None: average for the frozen recipe, GeM when blocks are trained"
    )
    trainable_blocks: int = Field(
        3, ge=0, description="partial/full: last blocks trained; full 0 = all"
    )
    max_epochs: int = Field(30, ge=1, description="most epochs (early stopping)")
    patience: int = Field(3, ge=1)
    refit: bool = Field(
        True,
        description="refit on all classes at the best epoch count (--no-refit: export the best "
        "checkpoint)",
    )
    lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    margin: float = 0.2
    classes_per_batch: int = Field(32, ge=2, description="P of P x K batches")
    per_class: int = Field(8, ge=2, description="K of P x K batches")
    select_fraction: float = Field(0.2, gt=0, lt=1)
    eval_split: str = "val"
    all_classes: bool = Field(
        False,
        description="train on every photo of the data, the evaluation split included (the "
        "shipped model); its figures on that split then mean nothing",
    )
    seed: int = 0
    deterministic: bool = False
    accelerator: str = Field("auto", description="auto, cpu, gpu")
    devices: int | str = Field("auto", description="auto or a count")
    workers: int = 1
    cache_dir: Path = Path("data/cache")
    work_dir: Path = Field(Path("runs"), description="logs and checkpoints")

    @model_validator(mode="after")
    def _default_pooling(self) -> TrainConfig:
        if self.pooling is None:
            self.pooling = "avg" if self.recipe == "frozen" else "gem"
        return self

    @property
    def pool(self) -> PoolingKind:
        return self.pooling or "avg"
