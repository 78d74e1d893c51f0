"""Cutting a backbone into a frozen prefix and a trainable tail that share its modules.

``tail(prefix(x)) == backbone(x)``; training the tail trains the backbone's last blocks in place,
so the fine-tuned backbone is exported as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from carembed.backbones.efficientnet_lite import EfficientNetLiteFeatures


class _LitePrefix(nn.Module):
    def __init__(self, net: EfficientNetLiteFeatures, stop: int) -> None:
        super().__init__()
        self.net, self.stop = net, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.run_blocks(self.net.stem(x), 0, self.stop)


class _LiteTail(nn.Module):
    def __init__(self, net: EfficientNetLiteFeatures, start: int) -> None:
        super().__init__()
        self.net, self.start = net, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.run_blocks(x, self.start, len(self.net.blocks))
        return self.net.head(x)  # type: ignore[no-any-return]

    def trainable(self) -> list[nn.Module]:
        return [*self.net.blocks[self.start :], self.net.head]


def split_backbone(backbone: nn.Module, trainable_blocks: int) -> tuple[nn.Module, nn.Module]:
    """(prefix, tail) where the tail holds the last ``trainable_blocks`` blocks (and the final
    1x1 conv of EfficientNet-Lite). 0 blocks: the whole backbone is the prefix."""
    if trainable_blocks < 0:
        raise ValueError("trainable_blocks must be >= 0")
    if isinstance(backbone, EfficientNetLiteFeatures):
        stop = len(backbone.blocks) - trainable_blocks
        if stop < 0:
            raise ValueError(f"the backbone has only {len(backbone.blocks)} blocks")
        return _LitePrefix(backbone, stop), _LiteTail(backbone, stop)
    if isinstance(backbone, nn.Sequential):
        if trainable_blocks > len(backbone):
            raise ValueError(f"the backbone has only {len(backbone)} blocks")
        stop = len(backbone) - trainable_blocks
        return backbone[:stop], backbone[stop:]
    raise ValueError(
        f"cannot split a {type(backbone).__name__} into blocks: use the frozen or full recipe"
    )


def tail_modules(tail: nn.Module) -> list[nn.Module]:
    """The modules whose parameters the tail trains."""
    if isinstance(tail, _LiteTail):
        return tail.trainable()
    return [tail]
