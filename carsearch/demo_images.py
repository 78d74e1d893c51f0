"""Writes a few generated pictures (two of them near-duplicates) and prints their paths.

Used by the README's first command on a machine that has no car photos yet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (320, 200), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = int(rng.integers(0, 280)), int(rng.integers(0, 160))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle((x, y, x + int(rng.integers(20, 90)), y + int(rng.integers(20, 60))), colour)
    return img


def write_demo_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(4):
        paths.append(folder / f"scene{seed}.jpg")
        _picture(seed).save(paths[-1], quality=90)
    paths.append(folder / "scene0-flipped.jpg")
    _picture(0).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(paths[-1], quality=90)
    return paths


if __name__ == "__main__":
    sys.stdout.write(" ".join(str(p) for p in write_demo_images(Path(sys.argv[1]))) + "\n")
