from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from safetensors.torch import save_file

from carembed.artifact import ArtifactError, load_model, load_or_default, save_model
from carembed.backbones import OFFLINE, BackboneError, get_backbone
from carembed.backbones.weights import file_sha256, read_state_dict
from carembed.backends import MissingGraph
from carembed.embedder import Embedder
from carembed.identity import EmbeddingVersion, embedding_version, parse_embedding_version
from carembed.model import CarEmbeddingModel, build_model
from tests.conftest import scene


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_offline_backbones_load_strictly_without_network(name: str, no_network: None) -> None:
    spec = get_backbone(name)
    built = spec.build(None)
    source_file = next(p for p in _weights_files(name))
    assert built.weights.sha256 == file_sha256(source_file)
    # The first conv of the module holds exactly the file's first tensor.
    first_file_tensor = next(iter(read_state_dict(source_file).values()))
    first_conv = next(m for m in built.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert torch.equal(first_conv.weight, first_file_tensor)
    size = spec.preprocessing.size
    with torch.inference_mode():
        out = built.module.eval()(torch.zeros(1, 3, size, size))
    assert out.shape[1] == spec.dim == 1280


def _weights_files(name: str) -> list[Path]:
    from carembed.backbones import efficientnet_lite, mobilenet
    from carembed.backbones.weights import package_file

    if name == "mobilenet_v2":
        return [package_file(mobilenet.DISTRIBUTION, mobilenet.WEIGHTS_FILE)]
    _, dist, rel = efficientnet_lite._VARIANTS[name]
    return [package_file(dist, rel)]


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(BackboneError, match=r"unknown backbone 'resnet9000'.*efficientnet_lite0"):
        get_backbone("resnet9000")


def test_torchvision_weights_missing_offline_name_the_file(
    no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BackboneError) as info:
        build_model("resnet50")
    message = str(info.value)
    assert "resnet50-11ad3fa6.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "weights_path" in message


def test_torchvision_backbone_from_local_weights_round_trips(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.safetensors"
    save_file(resnet18(weights=None).state_dict(), str(weights))
    model = build_model("resnet18", weights_path=weights, head="linear", embedding_dim=64)
    assert model.config.backbone.in_artifact and model.config.embedding_dim == 64
    images = [scene(1), scene(2)]
    before = Embedder(model).embed(images)
    save_model(model, tmp_path / "m")
    after = Embedder(load_model(tmp_path / "m")).embed(images)
    np.testing.assert_allclose(after, before, atol=1e-5)


def _trained_like(model: CarEmbeddingModel) -> CarEmbeddingModel:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def test_save_load_round_trip_same_vectors_same_version_no_pickles(tmp_path: Path) -> None:
    model = _trained_like(build_model(head="skip", hidden_dim=32, pooling="gem"))
    images = [scene(s) for s in range(3)]
    before = Embedder(model).embed(images)
    version = save_model(model, tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["head"]["kind"] == "skip" and config["preprocessing"]["size"] == 224
    assert config["backbone"]["weights_sha256"] == model.config.backbone.weights_sha256
    loaded = load_model(tmp_path / "model", device="cpu")
    assert loaded.version() == version == model.version()
    np.testing.assert_array_equal(Embedder(loaded).embed(images), before)


def test_version_changes_with_weights_and_config(tmp_path: Path) -> None:
    a = build_model(head="skip")
    b = _trained_like(build_model(head="skip"))
    assert a.version() == build_model(head="skip").version()
    assert a.version() != b.version()
    assert a.version() != build_model(head="skip", pooling="gem").version()


def test_the_version_is_what_decides_the_vectors_and_nothing_descriptive(tmp_path: Path) -> None:
    model = build_model(head="linear", embedding_dim=16)
    version = model.version()
    images = [scene(s) for s in range(2)]
    before = Embedder(model).embed(images)
    # A re-fitted calibration and a training record change no vector: the same version.
    model.update_config(training={"calibration": {"k": 7}, "recipe": "frozen", "best_epoch": 3})
    model.update_config(head=model.config.head.model_copy(update={"dropout": 0.3}))
    assert model.version() == version
    np.testing.assert_array_equal(Embedder(model).embed(images), before)
    assert save_model(model, tmp_path) == version == load_model(tmp_path).version()
    # What changes the vectors changes the version.
    flipped = load_model(tmp_path)
    flipped.update_config(test_time_flip=True)
    resized = load_model(tmp_path)
    resized.update_config(preprocessing=resized.preprocessing.model_copy(update={"size": 200}))
    assert len({version, flipped.version(), resized.version()}) == 3


def test_embedding_versions_name_the_model_and_the_precision() -> None:
    model = build_model("mobilenet_v2")
    f32 = Embedder(model, engine="torch")
    assert f32.version == embedding_version(model.version(), "float32") == model.version() + "-f32"
    parsed = parse_embedding_version(f32.version)
    assert parsed == EmbeddingVersion(model.version(), "float32") and str(parsed) == f32.version
    assert parse_embedding_version(model.version() + "-int8") == EmbeddingVersion(
        model.version(), "int8"
    )
    # A collection named by the model version alone (an earlier carsearch): not parsed.
    assert parse_embedding_version(model.version()) is None
    assert parse_embedding_version("f32") is None and parse_embedding_version(None) is None
    with pytest.raises(MissingGraph):  # int8 vectors asked of a model with no int8 graph
        Embedder(model, engine="auto", precision="int8")
    with pytest.raises(MissingGraph):  # and of PyTorch, which runs float32
        Embedder(model, engine="torch", precision="int8")


def test_gpu_saved_tensors_load_on_cpu(tmp_path: Path) -> None:
    model = build_model(head="linear", embedding_dim=16)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path, device=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_damaged_model_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"config\.json is missing"):
        load_model(tmp_path)
    model = build_model(head="linear", embedding_dim=16)
    save_model(model, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="cannot be read"):
        load_model(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["backbone"]["weights_sha256"] = "0" * 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(
        {"head.1.weight": torch.zeros(16, 1280), "head.1.bias": torch.zeros(16)},
        str(tmp_path / "model.safetensors"),
    )
    with pytest.raises(ArtifactError, match="differ from the ones this model was made with"):
        load_model(tmp_path)


def test_zero_shot_names_the_imagenet_backbone_with_an_identity_head() -> None:
    model = load_or_default(Path("zero-shot"))
    assert model.config.backbone.name == "efficientnet_lite0"
    assert model.config.head.kind == "identity"


def test_single_and_batch_paths_give_the_same_vectors(
    embedder: Embedder, image_files: list[Path]
) -> None:
    batch = embedder.embed(image_files)
    singles = np.concatenate([embedder.embed([p]) for p in image_files])
    np.testing.assert_allclose(singles, batch, atol=1e-5)
    from_files = np.zeros_like(batch)
    for chunk in embedder.embed_files(image_files, num_workers=0):
        from_files[chunk.indices] = chunk.vectors
    np.testing.assert_allclose(from_files, batch, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert batch.dtype == np.float32


def test_augmented_copy_is_nearest_among_distractors(embedder: Embedder) -> None:
    originals = [scene(seed) for seed in range(12)]
    query = originals[5].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    query = ImageEnhance.Brightness(query.crop((6, 4, 154, 92))).enhance(1.15)
    vectors = embedder.embed([*originals, query])
    scores = vectors[:-1] @ vectors[-1]
    assert int(np.argmax(scores)) == 5


def test_bad_files_are_reported_not_fatal(
    embedder: Embedder, image_files: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [image_files[0], bad, tmp_path / "gone.jpg", image_files[1]]
    vectors, kept, failures = embedder.embed_all(paths)
    assert kept == [0, 3] and len(vectors) == 2
    assert [i for i, _ in failures] == [1, 2]
    assert failures[0][1].startswith("unreadable")
