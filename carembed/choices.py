"""Named choices as types: the modules that implement them and the CLI's choice lists
(``typing.get_args``) read them from here, so a name is added in one place. No torch, so that
``carsearch --help`` and ``carsearch serve`` stay light. The training recipe and loss are here
too: a model's ``config.json`` records which made it."""

from __future__ import annotations

from typing import Literal

EngineChoice = Literal["auto", "torch", "onnx", "onnx-int8"]
PoolingKind = Literal["avg", "gem"]
HeadKind = Literal["identity", "linear", "skip", "mlp"]
Recipe = Literal["frozen", "partial", "full"]
LossName = Literal[
    "multi_similarity",
    "triplet_batch_hard",
    "triplet_semi_hard",
    "triplet_batch_all",
    "proxy_anchor",
]
