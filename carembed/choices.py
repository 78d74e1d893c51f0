"""The model's named choices as types: the modules that implement them and the CLI's choice
lists (``typing.get_args``) read them from here, so a name is added in one place. No torch."""

from __future__ import annotations

from typing import Literal

EngineChoice = Literal["auto", "torch", "onnx", "onnx-int8"]
PoolingKind = Literal["avg", "gem"]
HeadKind = Literal["identity", "linear", "skip", "mlp"]
