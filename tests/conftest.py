"""Shared fixtures: generated car-like images (no dataset needed) and one default model."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from carembed.embedder import Embedder
from carembed.model import CarEmbeddingModel, build_model


def scene(seed: int, size: tuple[int, int] = (160, 96)) -> Image.Image:
    """A distinct synthetic picture: coloured background, shapes placed by the seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        x1, y1 = x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(10, 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return img


def stub_rates(int8: float, fp32: float):  # type: ignore[no-untyped-def]
    """A stand-in for ``carembed.quantize.measure_rate``: a graph whose file name holds
    "int8" (staged as .model.int8.onnx.partial, or <version>.int8.onnx) gets ``int8`` photos/s,
    the float32 one ``fp32``."""

    def rate(forward: object, batch: object, repeats: int = 3) -> float:
        return int8 if "int8" in Path(getattr(forward, "path", "")).name else fp32

    return rate


@pytest.fixture(scope="session", autouse=True)
def float32_by_default() -> Iterator[None]:
    """The services and commands under test run the float32 graph (no int8 gate on their
    galleries, which would take the cores and switch engines mid-test); the gate's own tests
    turn it back on."""
    import os

    before = os.environ.get("CARSEARCH_INT8")
    os.environ["CARSEARCH_INT8"] = "false"
    yield
    if before is None:
        os.environ.pop("CARSEARCH_INT8", None)
    else:
        os.environ["CARSEARCH_INT8"] = before


@pytest.fixture(scope="session")
def default_model() -> CarEmbeddingModel:
    return build_model()


@pytest.fixture(scope="session")
def embedder(default_model: CarEmbeddingModel) -> Embedder:
    return Embedder(default_model, batch_size=8)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a network connection fails, as on an offline machine."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture
def image_files(tmp_path: Path) -> list[Path]:
    paths = []
    for seed in range(4):
        path = tmp_path / f"img{seed}.jpg"
        scene(seed).save(path, quality=92)
        paths.append(path)
    return paths
