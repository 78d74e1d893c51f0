"""Inference backends for the servable model: eager PyTorch, or ONNX Runtime on CPU (the store
engines are another thing: ``indexer.engines``).

The ONNX graph holds the whole embedding (backbone, pooling, head, L2 normalisation) with a
dynamic batch axis. It is built once from the model's weights and cached as
``<onnx_dir>/<model version>.onnx``; the file carries the version in its metadata, and one that
is stale (another version) or unreadable is rebuilt, never trusted. Exporting never changes
the model version.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from carembed.atomic import replace_durably
from carembed.model import CarEmbeddingModel

logger = logging.getLogger(__name__)

BackendName = Literal["torch", "onnx", "onnx-int8"]
VERSION_KEY = "carsearch_model_version"


class Backend(Protocol):
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """Eager PyTorch in ``inference_mode``; channels_last on CPU convolutions."""

    def __init__(self, model: CarEmbeddingModel, device: torch.device, channels_last: bool) -> None:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device).to(memory_format=memory_format).eval()
        self.device, self.channels_last = device, channels_last

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()  # type: ignore[no-any-return]


def export_module(
    module: torch.nn.Module, size: int, path: Path, output: str, metadata: dict[str, str]
) -> None:
    """Write ``module`` (images (N, 3, size, size) -> ``output``) as an ONNX graph with a
    dynamic batch axis to ``path``, atomically, with ``metadata`` in it."""
    import onnx

    cpu_module = module.to("cpu").to(memory_format=torch.contiguous_format).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                cpu_module,
                (torch.zeros(2, 3, size, size),),
                str(tmp),
                input_names=["images"],
                output_names=[output],
                dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, str(tmp))
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model: CarEmbeddingModel, path: Path, version: str) -> None:
    """Write the whole embedding graph to ``path``, tagged with the model ``version``."""
    export_module(model, model.preprocessing.size, path, "embeddings", {VERSION_KEY: version})


def session_options(threads: int | None) -> Any:
    """ONNX Runtime CPU options: ``threads`` intra-op threads, sequential, full optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: decoding processes share these cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class MissingGraph(RuntimeError):
    """No usable int8 graph of this model version."""


def graph_version(path: Path) -> str | None:
    """The model version an ONNX graph file was made from (None: unreadable, or none)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:  # a damaged or foreign file
        return None
    return next((p.value for p in graph.metadata_props if p.key == VERSION_KEY), None)


class OnnxBackend:
    """ONNX Runtime, CPU execution provider; one session per engine (per process). The
    float32 graph is built on demand in ``onnx_dir``; an ``int8_graph`` is only ever read."""

    def __init__(
        self,
        model: CarEmbeddingModel,
        version: str,
        onnx_dir: Path,
        threads: int | None,
        int8_graph: Path | None = None,
    ) -> None:
        self.path = Path(onnx_dir) / f"{version}.onnx"
        options = session_options(threads)
        if int8_graph is not None:
            self.path = int8_graph
            self.session = self._open(options, version)
            if self.session is None:
                raise MissingGraph(
                    f"no int8 graph of model {version} at {self.path}: run "
                    "`carsearch model quantize` (it keeps one only when it is faster and "
                    "as accurate)"
                )
            return
        session = self._open(options, version)
        if session is None:
            logger.info("building the ONNX graph of %s at %s", version, self.path)
            export_onnx(model, self.path, version)
            session = self._open(options, version)
            if session is None:
                raise RuntimeError(f"the ONNX graph written to {self.path} cannot be loaded")
        self.session = session

    def _open(self, options: object, version: str) -> Any:
        import onnxruntime as ort

        if not self.path.is_file():
            return None
        try:
            session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for damaged files
            logger.warning("ignoring unreadable %s: %s", self.path, exc)
            return None
        found = session.get_modelmeta().custom_metadata_map.get(VERSION_KEY)
        if found != version:
            logger.warning("ignoring %s: it holds model %s, not %s", self.path, found, version)
            return None
        return session

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(["embeddings"], {"images": np.ascontiguousarray(batch)})
        return np.asarray(out[0], dtype=np.float32)
