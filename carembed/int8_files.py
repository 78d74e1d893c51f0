"""Where a model's int8 graph and a failed int8 gate's figures are kept (read by the engines,
written by ``carembed.quantize``)."""

from __future__ import annotations

from pathlib import Path

from carembed.artifact import INT8_FILE
from carembed.model import CarEmbeddingModel


def int8_graph_path(model: CarEmbeddingModel, onnx_dir: Path) -> Path:
    """Where the model's int8 graph lives: its folder, else (the zero-shot model) ``onnx_dir``."""
    if model.source_dir is not None:
        return model.source_dir / INT8_FILE
    return Path(onnx_dir) / f"{model.version()}.int8.onnx"


def rejection_path(graph: Path) -> Path:
    """Where a failed gate leaves its figures, so that it is not run again for this model."""
    return graph.with_name(graph.name.removesuffix(".onnx") + ".rejected.json")
