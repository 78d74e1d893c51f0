"""Batched embedding of images, files and folders with a loaded model.

``Embedder.embed`` takes images, paths or bytes and returns an (N, D) float32 array of unit
vectors. ``Embedder.embed_files`` decodes and resizes in DataLoader workers and yields batches
with the files that could not be used listed beside them, so one bad file never stops a run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from carembed.backends import Backend, BackendName, MissingGraph, OnnxBackend, TorchBackend
from carembed.choices import EngineChoice
from carembed.cpu import cpu_description, int8_sums
from carembed.identity import Precision, embedding_version
from carembed.images import ImageError, ImageLimits, ImageSource, load_image_with_size
from carembed.int8_files import int8_check, int8_graph_path
from carembed.model import CarEmbeddingModel
from carembed.preprocess import Preprocessing
from carembed.region import Box

logger = logging.getLogger(__name__)


def load_for_model(
    source: ImageSource, preprocessing: Preprocessing, limits: ImageLimits, box: Box | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """One photo decoded as the model needs it (reduced early; an elongated photo shrunk along
    its long side when the model squashes), or only its region ``box``, and its full (width,
    height) as shown."""
    return load_image_with_size(
        source, limits, preprocessing.draft_size, preprocessing.resize == "squash", box
    )


def prepare(
    source: ImageSource | Image.Image,
    preprocessing: Preprocessing,
    limits: ImageLimits,
    box: Box | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Load (unless already an image) and preprocess one image (or its region ``box``):
    (3, S, S) array, full size."""
    if isinstance(source, Image.Image):
        image, size = (source.convert("RGB") if source.mode != "RGB" else source), source.size
    else:
        image, size = load_for_model(source, preprocessing, limits, box)
    return preprocessing.to_array(image), size


@dataclass
class FileBatch:
    """Vectors for the files at ``indices`` (positions in the input list), their full sizes
    (width, height), and the files that could not be used with the reason."""

    indices: list[int]
    vectors: np.ndarray
    sizes: list[tuple[int, int]] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)


_Prepared = tuple[np.ndarray, tuple[int, int]]
_Item = tuple[int, _Prepared | None, str | None]


class ImageFileDataset(Dataset[_Item]):
    """(index, (array, full size) or None, failure reason or None) for each file."""

    def __init__(self, paths: Sequence[Path], preprocessing: Preprocessing, limits: ImageLimits):
        self.paths = paths
        self.preprocessing = preprocessing
        self.limits = limits

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Item:
        try:
            return index, prepare(self.paths[index], self.preprocessing, self.limits), None
        except ImageError as exc:
            return index, None, f"{exc.reason}: {exc}"
        except OSError as exc:  # missing or unreadable file
            return index, None, f"unreadable: {exc}"


_Collated = tuple[list[int], torch.Tensor, list[tuple[int, int]], list[tuple[int, str]]]


def _collate(items: list[_Item]) -> _Collated:
    """Stacks the good items' arrays; lists their indices and sizes, and the failures."""
    good = [(i, p) for i, p, _ in items if p is not None]
    failures = [(i, err) for i, p, err in items if p is None and err is not None]
    arrays = np.stack([p[0] for _, p in good]) if good else np.empty((0, 3, 1, 1), np.float32)
    # A tensor crosses from a worker process through shared memory, an array by pickling.
    return [i for i, _ in good], torch.from_numpy(arrays), [p[1] for _, p in good], failures


def resolve_backend(engine: EngineChoice, device: str | torch.device) -> BackendName:
    """``auto``: ONNX Runtime on CPU (the Embedder prefers the int8 graph when the model has
    one that passed the int8 check), PyTorch on a GPU."""
    if engine != "auto":
        return engine
    return "onnx" if torch.device(device).type == "cpu" else "torch"


def _checked_here(graph: Path) -> bool:
    """Whether the int8 graph's check holds on this CPU (``QuantizationReport.holds_here``);
    logged when it does not: ``auto`` then runs float32."""
    check = int8_check(graph)
    if check is None or check.holds_here():
        return True
    logger.warning(
        "the int8 graph %s was checked on %s, which sums int8 products %s; this CPU (%s) "
        "sums them %s, so its vectors differ here: running float32. `carsearch model "
        "quantize --check-only MODEL --data PHOTOS` scores it on this machine; "
        "CARSEARCH_ENGINE=onnx-int8 runs it anyway",
        graph,
        check.cpu,
        check.int8_sums,
        cpu_description(),
        int8_sums(),
    )
    return False


class Embedder:
    """A model ready for inference on CPU or GPU, batched, with the engine of choice."""

    def __init__(
        self,
        model: CarEmbeddingModel,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
        channels_last: bool = True,
        limits: ImageLimits | None = None,
        engine: EngineChoice = "torch",
        onnx_dir: Path = Path("data/onnx"),
        int8: bool = True,
        precision: Precision | None = None,
    ) -> None:
        """``precision``: the graph the vectors must come from (an index's collection of int8
        vectors is searched with int8 vectors: MissingGraph when the model has no int8 graph);
        None: ``engine`` auto on the CPU runs the int8 graph when ``int8`` and the graph passed
        the int8 check, float32 otherwise."""
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.eval()
        self.batch_size = batch_size
        self.limits = limits or ImageLimits()
        self.model_version = model.version()
        self.backend = resolve_backend(engine, self.device)
        self.runner = self._runner(engine, onnx_dir, threads, channels_last, int8, precision)
        self.precision: Precision = "int8" if self.backend == "onnx-int8" else "float32"
        if precision is not None and precision != self.precision:
            raise MissingGraph(f"{self.backend} on {self.device} makes no {precision} vectors")
        self.version = embedding_version(self.model_version, self.precision)
        """The embedding version: which vectors this embedder makes (``carembed.identity``)."""

    def _runner(
        self,
        engine: EngineChoice,
        onnx_dir: Path,
        threads: int | None,
        channels_last: bool,
        int8: bool,
        precision: Precision | None,
    ) -> Backend:
        if self.backend == "torch":
            return TorchBackend(self.model, self.device, channels_last)
        if self.device.type != "cpu":
            raise ValueError("the onnx backends run on the CPU; use --engine torch on a GPU")
        required = engine == "onnx-int8" or precision == "int8"
        if required or (engine == "auto" and int8 and precision != "float32"):
            # An int8 graph exists only when it passed the int8 check.
            graph = int8_graph_path(self.model, onnx_dir)
            try:
                found = OnnxBackend(self.model, self.model_version, onnx_dir, threads, graph)
            except MissingGraph:
                if required:
                    raise
            else:
                if required or _checked_here(graph):
                    self.backend = "onnx-int8"
                    return found
        self.backend = "onnx"
        return OnnxBackend(self.model, self.model_version, onnx_dir, threads)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.model.preprocessing

    @property
    def dim(self) -> int:
        return self.model.config.embedding_dim

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed (N, 3, S, S) float32 arrays -> (N, D) unit vectors, batch by batch."""
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            out[start : start + len(chunk)] = self.runner(chunk)
        return out

    def prepare(self, source: ImageSource | Image.Image) -> np.ndarray:
        return prepare(source, self.preprocessing, self.limits)[0]

    def embed(self, sources: Sequence[ImageSource | Image.Image]) -> np.ndarray:
        """Images, paths or bytes -> (N, D); raises ImageError on the first unusable image."""
        if not sources:
            return np.empty((0, self.dim), dtype=np.float32)
        return self.embed_arrays(np.stack([self.prepare(s) for s in sources]))

    def embed_files(self, paths: Sequence[Path], num_workers: int = 0) -> Iterator[FileBatch]:
        """Embed files batch by batch; decoding and resizing run in ``num_workers`` processes."""
        loader = DataLoader(
            ImageFileDataset(paths, self.preprocessing, self.limits),
            batch_size=self.batch_size,
            num_workers=num_workers,
            collate_fn=_collate,
            persistent_workers=False,
        )
        for indices, tensor, sizes, failures in loader:
            arrays = tensor.numpy()
            vectors = (
                self.embed_arrays(arrays) if len(arrays) else np.empty((0, self.dim), np.float32)
            )
            yield FileBatch(indices, vectors, sizes, failures)

    def embed_all(
        self, paths: Sequence[Path], num_workers: int = 0, progress: str | None = None
    ) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
        """Every file at once: (vectors, indices of the files they belong to, failures)."""
        from tqdm import tqdm

        vectors: list[np.ndarray] = []
        indices: list[int] = []
        failures: list[tuple[int, str]] = []
        with tqdm(total=len(paths), desc=progress, unit="img", disable=progress is None) as bar:
            for batch in self.embed_files(paths, num_workers=num_workers):
                vectors.append(batch.vectors)
                indices.extend(batch.indices)
                failures.extend(batch.failures)
                bar.update(len(batch.indices) + len(batch.failures))
        for index, reason in failures:
            logger.warning("skipped %s: %s", paths[index], reason)
        stacked = np.concatenate(vectors) if vectors else np.empty((0, self.dim), np.float32)
        return stacked, indices, failures
