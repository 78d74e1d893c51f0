"""Shared fixtures: generated car-like images (no dataset needed) and one default model."""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image, ImageDraw

from carembed.embedder import Embedder
from carembed.model import CarEmbeddingModel, build_model

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], seconds: float = 120, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (returned); AssertionError, naming
    ``what`` and the last value, after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {seconds} s: {what} (last: {value!r})")
        time.sleep(0.02)


def readyz_when(
    client: Any, check: Callable[[dict[str, Any]], object], seconds: float = 120
) -> dict[str, Any]:
    """``/readyz``'s body once ``check`` holds for it (``client``: a TestClient or an httpx
    client of the running service)."""

    def body() -> dict[str, Any] | None:
        found: dict[str, Any] = client.get("/readyz").json()
        return found if check(found) else None

    return wait_until(body, seconds, what="/readyz")


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


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """``CARSEARCH_<NAME>`` set to these values for the duration, restored after."""
    names = {f"CARSEARCH_{key.upper()}": value for key, value in values.items()}
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def float32_zero_shot_by_default() -> Iterator[None]:
    """The services and commands under test run the zero-shot model's float32 graph: a third
    of the shipped model's compute per photo, no int8 gate on their galleries (it would take
    the cores and switch engines mid-test). The gate's own tests turn int8 back on; the
    shipped model's tests unset the model."""
    with environment(int8="false", model_dir="zero-shot"):
        yield


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data dir (commands and services that name none use it): none
    reads or writes the checkout's ``data/``."""
    monkeypatch.setenv("CARSEARCH_DATA_DIR", str(tmp_path_factory.mktemp("data")))


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


def street(rotated: bool = False) -> bytes:
    """Two gallery cars side by side (Audi left, Tesla right), as a JPEG; ``rotated``: stored
    turned by 90 degrees with the EXIF orientation that shows it upright."""
    shown = Image.new("RGB", (320, 96))
    shown.paste(scene(0), (0, 0))  # Audi_TTS_Coupe_2012/0.jpg
    shown.paste(scene(201), (160, 0))  # Tesla_Model_S_Sedan_2012/1.jpg
    buf = io.BytesIO()
    if rotated:
        exif = Image.Exif()
        exif[0x0112] = 6  # shown = stored turned 90 degrees clockwise
        shown.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=95, exif=exif)
    else:
        shown.save(buf, "JPEG", quality=95)
    return buf.getvalue()
