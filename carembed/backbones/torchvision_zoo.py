"""Any supported classifier of torchvision's zoo by name (resnet152 as in the Quaterion tutorial).

Weights come from torch's hub cache when they are there, are downloaded only when the network
answers, and otherwise a clear error names the file to provide. ``weights_path`` loads a local
state dict instead.
"""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path
from typing import Any

import torch
from torch import nn

from carembed.backbones.spec import BackboneSpec, BuiltBackbone, WeightsInfo
from carembed.backbones.weights import (
    BackboneError,
    file_sha256,
    locate_weights,
    read_state_dict,
)
from carembed.preprocess import Preprocessing

logger = logging.getLogger(__name__)

_MAP_FAMILIES = ("resnet", "resnext", "wide_resnet", "regnet_")
_FEATURES_FAMILIES = ("efficientnet_", "mobilenet_v3", "convnext_")
_VECTOR_FAMILIES = ("vit_", "swin_")


def _supported(name: str) -> bool:
    return name.startswith(_MAP_FAMILIES + _FEATURES_FAMILIES + _VECTOR_FAMILIES)


def _first_linear(module: nn.Module) -> nn.Linear:
    for child in module.modules():
        if isinstance(child, nn.Linear):
            return child
    raise BackboneError(f"no linear classifier found in {type(module).__name__}")


def _strip_classifier(name: str, model: Any) -> tuple[nn.Module, int]:
    """The model without its classifier, and the dim of what it returns."""
    if name.startswith(_MAP_FAMILIES):
        dim = _first_linear(model.fc).in_features
        return nn.Sequential(*list(model.children())[:-2]), dim
    if name.startswith(_FEATURES_FAMILIES):
        return model.features, _first_linear(model.classifier).in_features
    if name.startswith("vit_"):
        dim = _first_linear(model.heads).in_features
        model.heads = nn.Identity()
        return model, dim
    dim = _first_linear(model.head).in_features
    model.head = nn.Identity()
    return model, dim


def _cached_or_downloaded(name: str, weights: object) -> Path:
    url: str = weights.url  # type: ignore[attr-defined]
    filename = url.rsplit("/", 1)[-1]
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    path = cache_dir / filename
    if path.is_file():
        return path
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s weights from %s", name, url)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise BackboneError(
            f"the {name} weights are not cached and cannot be downloaded ({exc}). "
            f"Put the file {filename} (from {url}) into {cache_dir} "
            f"(TORCH_HOME moves that folder), or pass weights_path=<a local state dict>."
        ) from exc
    return path


def spec_for(name: str) -> BackboneSpec | None:
    """A spec for a torchvision classifier name, or None if torchvision has no such model."""
    from torchvision import models

    if name not in models.list_models(module=models) or not _supported(name):
        return None
    weights = models.get_model_weights(name).DEFAULT
    transforms = weights.transforms()
    with torch.device("meta"):
        _, dim = _strip_classifier(name, models.get_model(name, weights=None))

    def build(weights_path: Path | None) -> BuiltBackbone:
        path, source = locate_weights(
            weights_path, lambda: _cached_or_downloaded(name, weights), f"torchvision:{weights}"
        )
        model = models.get_model(name, weights=None)
        model.load_state_dict(read_state_dict(path), strict=True)
        module, _ = _strip_classifier(name, model)
        return BuiltBackbone(module, WeightsInfo(source=source, sha256=file_sha256(path)))

    def architecture() -> nn.Module:
        return _strip_classifier(name, models.get_model(name, weights=None))[0]

    return BackboneSpec(
        name=name,
        dim=dim,
        preprocessing=Preprocessing(
            size=int(transforms.crop_size[0]),
            resize="squash",
            mean=tuple(transforms.mean),
            std=tuple(transforms.std),
        ),
        offline=False,
        description=f"torchvision {name}, {weights}",
        build=build,
        architecture=architecture,
    )
