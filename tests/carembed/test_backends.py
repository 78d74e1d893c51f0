"""ONNX Runtime against eager PyTorch: same vectors, rebuilt when stale or corrupt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carembed.backbones import OFFLINE
from carembed.embedder import Embedder, resolve_backend
from carembed.model import build_model
from tests.conftest import scene


def _images(count: int) -> list:  # type: ignore[type-arg]
    return [scene(700 + i) for i in range(count)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize(
    ("backbone", "head"),
    [(name, "identity") for name in sorted(OFFLINE)]
    + [("mobilenet_v2", kind) for kind in ("linear", "skip", "mlp")],
)
def test_onnx_matches_torch(backbone: str, head: str, tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = build_model(
        backbone,
        head=head,
        hidden_dim=64 if head != "linear" else 0,
        embedding_dim=128 if head in ("linear", "mlp") else None,
        pooling="gem",
    )
    if head == "skip":  # a trained-looking skip head, not the zero-initialised identity
        torch.nn.init.normal_(model.head.out.weight, std=0.05)
    images = _images(3)
    reference = Embedder(model, engine="torch").embed(images)
    onnx = Embedder(model, engine="onnx", onnx_dir=tmp_path).embed(images)
    assert _cosines(reference, onnx).min() > 0.9999


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_test_time_flip_is_the_mean_of_the_photo_and_its_mirror(
    engine: str, tmp_path: Path
) -> None:
    import torch
    from PIL import ImageOps

    torch.manual_seed(0)
    model = build_model("mobilenet_v2", head="skip", hidden_dim=32, pooling="gem")
    torch.nn.init.normal_(model.head.out.weight, std=0.05)
    images = _images(3)
    plain = Embedder(model, engine="torch").embed(images)
    mirrored = Embedder(model, engine="torch").embed([ImageOps.mirror(i) for i in images])
    expected = plain + mirrored
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert _cosines(plain, mirrored).max() < 0.999  # the mirror really is another input
    plain_version = model.version()
    model.update_config(test_time_flip=True)
    assert model.version() != plain_version  # other vectors: another model version
    for batch_size in (1, 3):
        got = Embedder(model, engine=engine, onnx_dir=tmp_path, batch_size=batch_size).embed(images)
        assert _cosines(got, expected).min() > 0.9999


def test_batch_sizes_give_the_same_vectors(tmp_path: Path) -> None:
    model = build_model("mobilenet_v2")
    images = _images(9)
    full = Embedder(model, engine="onnx", onnx_dir=tmp_path, batch_size=32).embed(images)
    for size in (1, 7):
        got = Embedder(model, engine="onnx", onnx_dir=tmp_path, batch_size=size).embed(images)
        np.testing.assert_allclose(got, full, atol=1e-5)


@pytest.mark.slow
def test_corrupt_or_stale_onnx_is_rebuilt(tmp_path: Path) -> None:
    model = build_model("mobilenet_v2")
    first = Embedder(model, engine="onnx", onnx_dir=tmp_path)
    path = first.runner.path  # type: ignore[attr-defined]
    expected = first.embed(_images(2))
    path.write_bytes(b"\x08\x07 not an onnx graph")
    again = Embedder(model, engine="onnx", onnx_dir=tmp_path)
    np.testing.assert_allclose(again.embed(_images(2)), expected, atol=1e-5)
    # A graph of another model under this model's name: detected by the version inside.
    other = build_model("mobilenet_v2", head="linear", embedding_dim=1280)
    other_path = Embedder(other, engine="onnx", onnx_dir=tmp_path).runner.path  # type: ignore[attr-defined]
    path.write_bytes(other_path.read_bytes())
    rebuilt = Embedder(model, engine="onnx", onnx_dir=tmp_path)
    np.testing.assert_allclose(rebuilt.embed(_images(2)), expected, atol=1e-5)
    assert model.version() == first.model_version  # exporting never changes the version


def test_engine_choice() -> None:
    assert resolve_backend("auto", "cpu") == "onnx"
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"


def test_engine_by_cli_flag_and_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.settings import AppSettings
    from carsearch.cli import main

    path = tmp_path / "a.png"
    scene(1).save(path)
    monkeypatch.chdir(tmp_path)
    assert main(["embed", str(path), "--engine", "onnx"]) == 0
    from indexer.settings import StoreSettings

    assert list(StoreSettings().layout.onnx.glob("*.onnx"))  # the data folder's, as serving's
    monkeypatch.setenv("CARSEARCH_ENGINE", "torch")
    assert AppSettings().engine == "torch"
