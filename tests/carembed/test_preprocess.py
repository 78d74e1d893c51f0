from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from carembed.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


def test_normalisation_matches_hand_computation() -> None:
    pre = Preprocessing(size=32, resize="squash", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    arr = pre.to_array(Image.new("RGB", (80, 50), (255, 128, 0)))
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32
    expected = [(255 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    np.testing.assert_allclose(arr[:, 10, 10], expected, rtol=1e-5)


def test_every_pixel_is_normalised_channel_first_and_contiguous() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pre = Preprocessing(size=32, resize="squash", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    arr = pre.to_array(Image.fromarray(pixels))  # same size: the resize leaves pixels alone
    expected = (pixels / 255.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(arr, expected.transpose(2, 0, 1), atol=1e-5)
    assert arr.flags.c_contiguous and arr.dtype == np.float32


def _halves() -> Image.Image:
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (100, 0, 200, 100))  # right half white
    return img


@pytest.mark.parametrize(
    ("policy", "column", "value"),
    [
        ("squash", 5, 0.0),  # the whole image is kept: left edge black
        ("center_crop", 5, 0.0),  # the crop keeps the middle: left part still black
        ("letterbox", 16, 0.5),  # padded rows above and below with the mean
    ],
)
def test_resize_policies(policy: str, column: int, value: float) -> None:
    pre = Preprocessing(size=32, resize=policy, mean=(0.5,) * 3, std=(0.5,) * 3)  # type: ignore[arg-type]
    img = pre.resize_image(_halves())
    assert img.size == (32, 32)
    pixel = np.asarray(img, dtype=np.float32)[1, column] / 255
    if policy == "letterbox":
        # Row 1 is padding: the mean colour (0.5 -> 128).
        np.testing.assert_allclose(pixel, [128 / 255] * 3, atol=1e-6)
    else:
        np.testing.assert_allclose(pixel, [value] * 3, atol=0.02)
