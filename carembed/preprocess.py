"""Preprocessing that travels with the model: size, resize policy, mean and std.

The same :class:`Preprocessing` is stored in the servable model's ``config.json`` and used by
training, the indexer and the service, so they can never disagree.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

ResizePolicy = Literal["squash", "letterbox", "center_crop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


class Preprocessing(BaseModel):
    """How an RGB image becomes the model's input tensor (C, H, W float32)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(gt=0, description="square input side in pixels")
    resize: ResizePolicy = Field(
        "squash",
        description="squash: whole image to size x size (best for wide cars); "
        "letterbox: keep aspect, pad; center_crop: shorter side to size, crop the centre",
    )
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def draft_size(self) -> tuple[int, int]:
        """The least decoded size that loses nothing for this policy."""
        return (self.size, self.size)

    def resize_image(self, img: Image.Image) -> Image.Image:
        size = self.size
        if self.resize == "squash":
            return img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        width, height = img.size
        if self.resize == "letterbox":
            scale = size / max(width, height)
            new = (max(1, round(width * scale)), max(1, round(height * scale)))
            resized = img.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0)
            fill = tuple(round(m * 255) for m in self.mean)
            canvas = Image.new("RGB", (size, size), fill)
            canvas.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
            return canvas
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        resized = img.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return resized.crop((left, top, left + size, top + size))

    def to_array(self, img: Image.Image) -> np.ndarray:
        """RGB image -> normalised float32 array of shape (3, size, size): ``(x / 255 - mean) /
        std`` as one multiply-add per channel, written channel-first in two passes."""
        pixels = np.asarray(self.resize_image(img)).transpose(2, 0, 1)  # uint8 view
        std = np.asarray(self.std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
        offset = (-np.asarray(self.mean, dtype=np.float64) / std).astype(np.float32)
        out = np.empty(pixels.shape, dtype=np.float32)
        np.multiply(pixels, scale, out=out)
        out += offset[:, None, None]
        return out
