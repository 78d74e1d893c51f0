from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("ellipse", "rectangle", "triangle", "cross")


def shape_image(cls: int, seed: int, size: tuple[int, int] = (176, 112)) -> Image.Image:
    """Class = (shape, object colour); each picture has a random noisy background, position
    and scale, so the background is the main nuisance the model must learn to ignore."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    img = Image.fromarray(noise).resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    hue = np.array([(cls * 67) % 256, (cls * 151 + 80) % 256, (cls * 29 + 160) % 256])
    colour = tuple(int(c) for c in np.clip(hue + rng.integers(-20, 20, 3), 0, 255))
    w = int(rng.integers(50, 90))
    h = int(w * rng.uniform(0.5, 0.8))
    x, y = int(rng.integers(0, size[0] - w)), int(rng.integers(0, size[1] - h))
    shape = SHAPES[cls % len(SHAPES)]
    if shape == "ellipse":
        draw.ellipse((x, y, x + w, y + h), fill=colour)
    elif shape == "rectangle":
        draw.rectangle((x, y, x + w, y + h), fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=colour)
    else:
        draw.rectangle((x + w // 3, y, x + 2 * w // 3, y + h), fill=colour)
        draw.rectangle((x, y + h // 3, x + w, y + 2 * h // 3), fill=colour)
    return img


def make_shapes_dataset(
    root: Path, train_classes: int = 10, val_classes: int = 4, per_class: int = 10
) -> Path:
    """An ImageFolder of generated classes with a manifest.csv and a split column."""
    rows = ["path,class_name,split"]
    for cls in range(train_classes + val_classes):
        split = "train" if cls < train_classes else "val"
        folder = root / f"class{cls:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(cls, 1000 * cls + i).save(folder / f"{i}.png")
            rows.append(f"class{cls:02d}/{i}.png,Shape{cls:02d} Sedan 2012,{split}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def quick_train_args(
    data: Path, out: Path, cache: Path, runs: Path, epochs: int, devices: int | None = None
) -> list[str]:
    """``carsearch train``'s arguments for a quick CPU run: MobileNetV2, the frozen recipe, no
    int8 check (``devices``: processes, else Lightning's default)."""
    args = ["train", "--data", str(data), "--out", str(out), "--backbone", "mobilenet_v2"]
    args += ["--recipe", "frozen", "--epochs", str(epochs), "--workers", "0"]
    args += ["--accelerator", "cpu", "--no-int8-check", "--cache-dir", str(cache)]
    args += ["--work-dir", str(runs)]
    return args if devices is None else [*args, "--devices", str(devices)]
