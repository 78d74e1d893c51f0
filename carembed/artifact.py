"""The servable model folder: ``config.json`` + ``model.safetensors``. No pickles anywhere.

``save_model`` writes both files atomically (a temporary folder renamed into place);
``load_model`` rebuilds the architecture from the config, checks that the backbone weights are
the ones the model was made with, loads the tensors onto the requested device and recomputes
the model version.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from carembed.atomic import replace_durably
from carembed.backbones import BackboneError, get_backbone
from carembed.backends import graph_version
from carembed.config import FORMAT_VERSION, ModelConfig
from carembed.model import CarEmbeddingModel, build_model

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INT8_FILE = "model.int8.onnx"  # optional: the int8 graph that passed the int8 check
ZERO_SHOT = "zero-shot"
"""The model name (``--model zero-shot``) of the ImageNet backbone without fine-tuning."""


def shipped_model_dir() -> Path:
    """The fine-tuned car model that ships with carsearch (package data; ``LICENSE.md`` in it
    says what its weights may be used for, ``scripts/build-shipped-model.sh`` rebuilds it)."""
    return Path(__file__).resolve().parent / "shipped"


class ArtifactError(RuntimeError):
    """A model folder that cannot be loaded: missing files, bad config, mismatched weights."""


def config_json(model: CarEmbeddingModel, version: str) -> bytes:
    """``config.json`` of the model as ``save_model`` writes it (``version``: the model's)."""
    config = model.config.model_dump(mode="json") | {"model_version": version}
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def int8_graph_of(model: CarEmbeddingModel, version: str) -> Path | None:
    """The int8 graph in the folder the model came from, when it belongs to this version (it
    goes along wherever the model is saved)."""
    if model.source_dir is None:
        return None
    graph = model.source_dir / INT8_FILE
    return graph if graph.is_file() and graph_version(graph) == version else None


def save_model(model: CarEmbeddingModel, directory: Path) -> str:
    """Write the servable folder; returns the model version. Other files in it are kept; the
    int8 graph of the folder the model came from goes along when it belongs to this version."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    version = model.version()
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=directory))
    try:
        save_file(model.artifact_state(), str(staging / WEIGHTS_FILE))
        (staging / CONFIG_FILE).write_bytes(config_json(model, version))
        names = [WEIGHTS_FILE, CONFIG_FILE]  # config last: a folder with it is complete
        int8 = int8_graph_of(model, version)
        if int8 is not None and int8.parent.resolve() != directory.resolve():
            shutil.copyfile(int8, staging / INT8_FILE)
            names.insert(0, INT8_FILE)
        for name in names:
            replace_durably(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("saved model %s to %s", version, directory)
    return version


def read_config(directory: Path) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a model folder: {CONFIG_FILE} is missing")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    raw.pop("model_version", None)  # informative only: recomputed from the weights on load
    if raw.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} has format_version {raw.get('format_version')!r}; "
            f"this carsearch reads format {FORMAT_VERSION}"
        )
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{path} is not a valid model config: {exc}") from exc


def load_model(directory: Path, device: str | torch.device = "cpu") -> CarEmbeddingModel:
    """Rebuild a saved model on ``device`` (a GPU-trained model loads on a CPU server)."""
    directory = Path(directory)
    config = read_config(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"{directory} has no {WEIGHTS_FILE}")
    try:
        spec = get_backbone(config.backbone.name)
        if config.backbone.in_artifact:
            backbone = spec.architecture()
        else:
            built = spec.build(None)
            if built.weights.sha256 != config.backbone.weights_sha256:
                raise ArtifactError(
                    f"the {spec.name} weights installed here ({built.weights.source}, sha256 "
                    f"{built.weights.sha256[:12]}) differ from the ones this model was made with "
                    f"({config.backbone.weights_source}, {config.backbone.weights_sha256[:12]})"
                )
            backbone = built.module
    except BackboneError as exc:
        raise ArtifactError(f"cannot build the backbone of {directory}: {exc}") from exc
    model = CarEmbeddingModel(config, backbone)
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ArtifactError(f"{weights_path} cannot be read: {exc}") from exc
    expected = set(model.artifact_state())
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ArtifactError(
            f"{weights_path} does not match its config: missing {missing}, extra {extra}"
        )
    model.load_state_dict(tensors, strict=False)
    model.source_dir = directory
    return model.to(device).eval()


def is_zero_shot(directory: Path | None) -> bool:
    return directory is not None and str(directory) == ZERO_SHOT


def load_or_default(
    directory: Path | None, device: str | torch.device = "cpu"
) -> CarEmbeddingModel:
    """The model in ``directory``; None: the shipped model; ``zero-shot``: the ImageNet
    backbone with an identity head."""
    if is_zero_shot(directory):
        return build_model().to(device).eval()
    return load_model(shipped_model_dir() if directory is None else directory, device)
