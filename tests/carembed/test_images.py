from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carembed.images import (
    ImageLimits,
    ImageTooLargeError,
    ImageTooSmallError,
    UnreadableImageError,
    load_image,
)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (1-bit grey) with a tiny body: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_huge_image_is_refused_from_its_header_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_decode(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decode)
    with pytest.raises(ImageTooLargeError, match="400000000 pixels"):
        load_image(_png_header_only(20000, 20000))


def test_pixel_limit_is_configurable() -> None:
    data = io.BytesIO()
    Image.new("RGB", (100, 100)).save(data, "PNG")
    with pytest.raises(ImageTooLargeError):
        load_image(data.getvalue(), ImageLimits(max_pixels=9_999))
    assert load_image(data.getvalue(), ImageLimits(max_pixels=10_000)).size == (100, 100)


def test_not_an_image_and_truncated_and_tiny_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError):
        load_image(b"this is plain text, not a picture")
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (200, 10, 10)).save(buf, "JPEG")
    with pytest.raises(UnreadableImageError):
        load_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    small = io.BytesIO()
    Image.new("RGB", (31, 200)).save(small, "PNG")
    with pytest.raises(ImageTooSmallError, match="31x200"):
        load_image(small.getvalue())
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")


def _roundtrip(img: Image.Image, fmt: str = "PNG") -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return load_image(buf.getvalue())


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Image.new("L", (40, 40), 77), (77, 77, 77)),
        (lambda: Image.new("LA", (40, 40), (0, 0)), (255, 255, 255)),  # transparent -> white
        (lambda: Image.new("LA", (40, 40), (77, 255)), (77, 77, 77)),
        (lambda: Image.new("RGBA", (40, 40), (10, 20, 30, 0)), (255, 255, 255)),
        (lambda: Image.new("RGBA", (40, 40), (10, 20, 30, 255)), (10, 20, 30)),
        (lambda: Image.new("RGB", (40, 40), (10, 20, 30)).quantize(4), (10, 20, 30)),
        (lambda: Image.new("I;16", (40, 40), 65535), (255, 255, 255)),
        (lambda: Image.new("I;16", (40, 40), 32896), (128, 128, 128)),
    ],
)
def test_odd_modes_become_the_right_rgb(make: object, expected: tuple[int, int, int]) -> None:
    out = _roundtrip(make())  # type: ignore[operator]
    assert out.mode == "RGB"
    assert out.getpixel((20, 20)) == expected


def test_cmyk_jpeg_becomes_rgb() -> None:
    out = _roundtrip(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG")  # pure red
    r, g, b = out.getpixel((20, 20))  # type: ignore[misc]
    assert out.mode == "RGB" and r > 240 and g < 15 and b < 15


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (60, 40), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 30, 40))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(buf.getvalue())
    assert out.size == (40, 60)
    top = np.asarray(out)[2, 20]
    assert top[2] > 200 and top[0] < 60  # the blue left half is now at the top


def test_draft_decodes_large_jpeg_at_reduced_size_but_never_below_request() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (0, 128, 0)).save(buf, "JPEG")
    out = load_image(buf.getvalue(), draft_size=(224, 224))
    assert out.size == (400, 300)  # 1/4 scale: the smallest that keeps both sides >= 224
