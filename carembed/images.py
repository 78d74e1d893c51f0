"""The one image loader used by training, indexing and serving.

Every image enters through :func:`load_image`: its pixel count is checked from the header
before any pixel is decoded, JPEGs are decoded at a reduced size when the model needs fewer
pixels (draft mode), EXIF orientation is applied and every mode ends as 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from carembed.region import Box

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MIN_SIDE = 32

ImageSource = str | Path | bytes | BinaryIO


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is a stable machine-readable code."""

    reason = "invalid-image"


class UnreadableImageError(ImageError):
    """Not an image, an unknown format, or a truncated or corrupt file."""

    reason = "unreadable"


class ImageTooLargeError(ImageError):
    """More pixels than allowed (a decompression bomb, or simply too big)."""

    reason = "too-many-pixels"


class ImageTooSmallError(ImageError):
    """A side shorter than the minimum: nothing useful can be seen in it."""

    reason = "too-small"


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns or raises by its global limit; ours is explicit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image refused before decoding: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImageError(f"not a readable image: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT or mode == "I":
        # 16-bit (or 32-bit integer) greyscale: scale the full 16-bit range to 8 bits, in
        # integers (round(v / 257) = (v * 255 + 32767) // 65535). Pillow's own convert()
        # would clip everything above 255 to white.
        arr = np.clip(np.asarray(img), 0, 65535).astype(np.uint32)
        scaled = ((arr * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        unit = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo)
        return Image.fromarray((unit * 255.0).round().astype(np.uint8), mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        # Transparent parts become white, as a browser shows them on a page.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _factors(width: int, height: int, side: int, squash: bool) -> tuple[int, int]:
    """Whole factors (x, y) to shrink by: the largest common one that keeps both sides >=
    ``side``; with ``squash`` (the model squashes the photo to a square, so each side needs
    only ``side`` pixels) the longer side of an elongated photo is then shrunk further."""
    common = max(1, min(width // side, height // side))
    if not squash:
        return common, common
    return common * max(1, width // common // side), common * max(1, height // common // side)


def _reduced(img: Image.Image, side: int, squash: bool = False) -> Image.Image:
    """``img`` shrunk by whole factors (``_factors``) in its own mode (block averages), so that
    converting it costs little: a 36-Mpx 16-bit or RGBA PNG never becomes a full-size float or
    RGBA copy, nor does a 1,250,000 x 32 px strip."""
    fx, fy = _factors(img.width, img.height, side, squash)
    if max(fx, fy) < 2:
        return img
    if img.mode in _SIXTEEN_BIT:  # Pillow cannot reduce these: block means in numpy
        arr = np.asarray(img)
        h, w = (arr.shape[0] // fy) * fy, (arr.shape[1] // fx) * fx
        blocks = arr[:h, :w].reshape(h // fy, fy, w // fx, fx)
        sums = blocks.sum(axis=3, dtype=np.uint32).sum(axis=1, dtype=np.uint64)  # no big temps
        means = (sums + fx * fy // 2) // (fx * fy)
        return Image.fromarray(means.astype(np.int32), mode="I")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    return img.reduce((fx, fy))


def _orientation(img: Image.Image) -> int | None:
    """The EXIF orientation, or None when there is none or the EXIF block is malformed (the
    photo is then used as stored)."""
    try:
        value = img.getexif().get(0x0112)
    except Exception:  # Pillow raises SyntaxError, ValueError, struct.error... for bad TIFF
        return None
    return value if isinstance(value, int) else None


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(img: Image.Image, orientation: int | None) -> Image.Image:
    """The photo as shown: turned by its EXIF orientation (read before any reduction)."""
    method = _TRANSPOSE.get(orientation or 1)
    return img if method is None else img.transpose(method)


def decoded_pixels(
    source: ImageSource, draft_size: tuple[int, int] | None = None, box: Box | None = None
) -> int:
    """How many pixels decoding the image will hold at once, from its header alone: JPEGs are
    decoded at the smallest scale (1/2, 1/4, 1/8) that covers ``draft_size`` (within ``box``),
    other formats whole. Raises :class:`ImageError` for what is not an image."""
    img = _open(source)
    try:
        width, height = img.size
        scale = 1
        if draft_size is not None and img.format == "JPEG":
            side = max(draft_size) if box is None else box.side_needed(max(draft_size))
            while scale < 8 and min(width, height) // (2 * scale) >= side:
                scale *= 2
        return -(-width // scale) * -(-height // scale)
    finally:
        img.close()


def _check_box(box: Box, width: int, height: int, limits: ImageLimits) -> None:
    left, top, right, bottom = box.pixels(width, height)
    if min(right - left, bottom - top) < limits.min_side:
        raise ImageTooSmallError(
            f"the box is {right - left}x{bottom - top} px of the photo; each side must be at "
            f"least {limits.min_side} px"
        )


def load_image(
    source: ImageSource,
    limits: ImageLimits | None = None,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Open, check, decode and convert one image to RGB (see :func:`load_image_with_size`)."""
    return load_image_with_size(source, limits, draft_size)[0]


def load_image_with_size(
    source: ImageSource,
    limits: ImageLimits | None = None,
    draft_size: tuple[int, int] | None = None,
    squash: bool = False,
    box: Box | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, check, decode and convert one image to RGB; also its full (width, height) as shown.

    ``draft_size``: the smallest (width, height) the caller needs; JPEGs are then decoded
    at the smallest scale (1/2, 1/4, 1/8) that still covers it, which is several times faster,
    and other formats are shrunk in their own mode before any conversion (bounded memory);
    ``squash``: the caller squashes the photo to ``draft_size``, so the aspect ratio need not
    be kept and an elongated photo's long side is shrunk further; ``box``: only this region of
    the photo as shown (decoded at a scale that keeps ``draft_size`` pixels inside it).
    Raises :class:`ImageError` subclasses for unusable images and ``FileNotFoundError``
    for a missing file.
    """
    limits = limits or ImageLimits()
    img = _open(source)
    try:
        width, height = img.size
        if width * height > limits.max_pixels:
            raise ImageTooLargeError(
                f"image is {width}x{height} ({width * height} pixels), "
                f"more than the limit of {limits.max_pixels}"
            )
        if min(width, height) < limits.min_side:
            raise ImageTooSmallError(
                f"image is {width}x{height}; each side must be at least {limits.min_side} px"
            )
        # EXIF rotation may swap the sides: ask for the larger side in both directions.
        side = None if draft_size is None else max(draft_size)
        if side is not None and box is not None:
            side = box.side_needed(side)
        if side is not None and img.format == "JPEG":
            img.draft("RGB", (side, side))
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImageError(f"image could not be decoded: {exc}") from exc
        orientation = _orientation(img)
        if orientation in _SWAPS_SIDES:
            width, height = height, width
        if box is not None:
            _check_box(box, width, height, limits)
        if side is not None:
            img = _reduced(img, side, squash and box is None)
        img = _upright(img, orientation)
        if box is not None:
            img = img.crop(box.pixels(img.width, img.height))
        return _to_rgb(img), (width, height)
    except BaseException:
        img.close()
        raise
