"""Thumbnails of cars' photos: within a square side, at the photo's aspect as shown, as JPEG."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from carembed.atomic import write_atomically
from carembed.images import ImageLimits, load_image_with_size


def jpeg_thumbnail(image: Image.Image, size: tuple[int, int], side: int) -> bytes:
    """``image`` within ``side`` x ``side`` at the aspect of the photo as shown (``size``: an
    early reduction for the model may have squashed it), never enlarged."""
    scale = min(1.0, side / max(size))
    target = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    buf = io.BytesIO()
    image.resize(target, Image.Resampling.LANCZOS).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_thumbnail(source: Path, target: Path, side: int, limits: ImageLimits) -> None:
    """The thumbnail of a stored photo, written atomically: readers see all of it or none."""
    image, size = load_image_with_size(source, limits, (side, side))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, jpeg_thumbnail(image, size, side))
