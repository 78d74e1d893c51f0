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
    load_image_with_size,
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


def _saved(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_a_malformed_exif_block_is_ignored_not_fatal(fmt: str) -> None:
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    data = _saved(img, fmt, exif=b"garbage!garbage!")
    with Image.open(io.BytesIO(data)) as probe, pytest.raises(SyntaxError):
        probe.getexif()  # the defect is real: Pillow cannot parse it
    out = load_image(data, draft_size=(32, 32))
    assert out.size == (64, 48) and out.getpixel((5, 5))[1] > 180  # type: ignore[index]


def test_orientation_is_applied_to_reduced_non_jpeg_photos() -> None:
    img = Image.new("RGB", (1200, 800), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 600, 800))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(_saved(img, "PNG", exif=exif.tobytes()), draft_size=(224, 224))
    assert out.size == (267, 400)  # reduced by 3 (800 // 224), then turned upright
    top = np.asarray(out)[2, 130]
    assert top[2] > 200 and top[0] < 60  # the blue left half is now at the top


def test_sixteen_bit_and_rgba_photos_reduce_before_converting() -> None:
    ramp = (np.linspace(0, 65535, 900 * 1200).reshape(900, 1200)).astype(np.uint16)
    grey = Image.fromarray(ramp)
    assert grey.mode == "I;16"
    full = np.asarray(load_image(_saved(grey, "PNG")))
    small = np.asarray(load_image(_saved(grey, "PNG"), draft_size=(224, 224)))
    assert small.shape == (225, 300, 3)  # reduced by 4
    assert np.abs(small[::10, ::10, 0].astype(int) - full[::40, ::40, 0][:23, :30]).max() <= 3
    rgba = Image.new("RGBA", (1000, 1000), (255, 0, 0, 0))  # fully transparent red
    out = load_image(_saved(rgba, "PNG"), draft_size=(224, 224))
    assert out.size == (250, 250) and out.getpixel((10, 10)) == (255, 255, 255)  # on white


def test_formats_people_upload() -> None:
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    out = load_image(_saved(palette, "PNG", transparency=0))
    assert out.getpixel((3, 3)) == (255, 0, 0)
    frames = [Image.new("RGB", (64, 48), c) for c in ((0, 0, 255), (255, 0, 0))]
    for fmt in ("GIF", "WEBP"):
        data = _saved(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        first = load_image(data).getpixel((5, 5))
        assert first[2] > 200 and first[0] < 60, fmt  # type: ignore[index]  # the first frame
    assert load_image(_saved(frames[1], "WEBP", quality=95)).getpixel((5, 5))[0] > 200  # type: ignore[index]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect/></svg>'
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    for unreadable in (b"", svg, heic):
        with pytest.raises(UnreadableImageError):
            load_image(unreadable)


@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_an_elongated_photo_is_shrunk_along_its_long_side_when_squashed(mode: str) -> None:
    """A 40,000 x 40 strip: no common factor keeps both sides >= 32, so only a squashing
    caller may shrink it, along its long side alone; the result matches shrinking the full
    decode."""
    if mode == "RGBA":
        strip = Image.new("RGBA", (40_000, 40), (0, 0, 255, 255))
        strip.paste((255, 0, 0, 255), (0, 0, 20_000, 40))  # left half red
    else:
        ramp = np.tile(np.linspace(0, 65535, 40_000).astype(np.uint16), (40, 1))
        strip = Image.fromarray(ramp)
    data = _saved(strip, "PNG")
    assert load_image(data, draft_size=(32, 32)).size == (40_000, 40)  # aspect kept
    squashed = load_image_with_size(data, draft_size=(32, 32), squash=True)
    assert squashed[0].size == (32, 40) and squashed[1] == (40_000, 40)
    full = np.asarray(load_image(data).resize((32, 32), Image.Resampling.BOX), dtype=int)
    small = np.asarray(squashed[0].resize((32, 32), Image.Resampling.BOX), dtype=int)
    assert np.abs(full - small).max() <= 8
