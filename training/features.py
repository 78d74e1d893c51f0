"""Frozen backbone outputs computed once and cached on disk (for each image and its mirror).

The cache key is a fingerprint of everything that changes the outputs: backbone name and weights
hash, where the backbone is cut, preprocessing, and the file list with sizes and mtimes. A second
run with the same inputs reads the cache; any change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from carembed.datasets import CarRecord
from carembed.embedder import ImageFileDataset
from carembed.images import ImageLimits
from carembed.preprocess import Preprocessing

logger = logging.getLogger(__name__)


@dataclass
class CachedFeatures:
    """Outputs for the usable records: ``plain[i]`` and ``mirrored[i]`` belong to
    ``records[kept[i]]``; ``failures`` lists (record index, reason)."""

    plain: torch.Tensor
    mirrored: torch.Tensor
    kept: list[int]
    failures: list[tuple[int, str]]


def fingerprint(
    records: list[CarRecord], preprocessing: Preprocessing, backbone_key: dict[str, object]
) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(backbone_key, sort_keys=True).encode())
    digest.update(preprocessing.model_dump_json().encode())
    for record in records:
        try:
            stat = record.path.stat()
            digest.update(f"{record.relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{record.relative}\0missing\n".encode())
    return digest.hexdigest()


def _forward(
    extractor: nn.Module, size: int, device: torch.device
) -> Callable[[np.ndarray], torch.Tensor]:
    """The extractor as a function of a batch: ONNX Runtime on the CPU (3-4x eager PyTorch
    here), PyTorch on a GPU or when the export fails."""
    if device.type == "cpu":
        try:
            import onnxruntime as ort

            from carembed.backends import export_module, session_options

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "extractor.onnx"
                export_module(extractor, size, path, "features", {})
                session = ort.InferenceSession(
                    str(path), session_options(None), providers=["CPUExecutionProvider"]
                )

            def run_onnx(batch: np.ndarray) -> torch.Tensor:
                (out,) = session.run(["features"], {"images": np.ascontiguousarray(batch)})
                return torch.from_numpy(np.asarray(out, dtype=np.float32))

            return run_onnx
        except Exception as exc:  # an exotic module: fall back to eager PyTorch
            logger.warning("ONNX export of the feature extractor failed (%s): using PyTorch", exc)
    # channels_last roughly doubles CPU convolution throughput in eager PyTorch.
    module = extractor.to(device).to(memory_format=torch.channels_last).eval()

    def run_torch(batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        with torch.inference_mode():
            out: torch.Tensor = module(x.contiguous(memory_format=torch.channels_last))
        return out.float().cpu()

    return run_torch


def _compute(
    extractor: nn.Module,
    records: list[CarRecord],
    preprocessing: Preprocessing,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> CachedFeatures:
    dataset = ImageFileDataset([r.path for r in records], preprocessing, ImageLimits())
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    plain: list[torch.Tensor] = []
    mirrored: list[torch.Tensor] = []
    kept: list[int] = []
    failures: list[tuple[int, str]] = []
    forward = _forward(extractor, preprocessing.size, device)
    with torch.inference_mode(), tqdm(total=len(records), unit="img", desc="features") as bar:
        for items in loader:
            good = [(i, prepared[0]) for i, prepared, _ in items if prepared is not None]
            failures.extend((i, err) for i, prepared, err in items if prepared is None and err)
            bar.update(len(items))
            if not good:
                continue
            arrays = np.stack([a for _, a in good])
            out = forward(np.concatenate([arrays, arrays[..., ::-1]]))
            plain.append(out[: len(good)].to(torch.float16))
            mirrored.append(out[len(good) :].to(torch.float16))
            kept.extend(i for i, _ in good)
    for index, reason in failures:
        logger.warning("skipped %s: %s", records[index].relative, reason)
    if not plain:
        raise ValueError("no usable image in the training data")
    return CachedFeatures(torch.cat(plain), torch.cat(mirrored), kept, failures)


def cached_features(
    extractor: nn.Module,
    records: list[CarRecord],
    preprocessing: Preprocessing,
    backbone_key: dict[str, object],
    cache_dir: Path,
    *,
    batch_size: int = 32,
    num_workers: int = 1,
    device: torch.device | str = "cpu",
) -> tuple[CachedFeatures, bool]:
    """The extractor's outputs for ``records`` (from the cache when it holds them);
    returns (features, whether the cache was hit)."""
    key = fingerprint(records, preprocessing, backbone_key)
    path = cache_dir / f"features-{key[:24]}.safetensors"
    if path.is_file():
        try:
            tensors = load_file(str(path), device="cpu")
            meta = json.loads((path.with_suffix(".json")).read_text())
            logger.info("feature cache hit: %s", path)
            failures = [(int(i), str(r)) for i, r in meta["failures"]]
            return CachedFeatures(
                tensors["plain"], tensors["mirrored"], meta["kept"], failures
            ), True
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring a damaged feature cache %s: %s", path, exc)
    logger.info("computing features for %d images (cache miss)", len(records))
    features = _compute(
        extractor, records, preprocessing, batch_size, num_workers, torch.device(device)
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(
        {"plain": features.plain.contiguous(), "mirrored": features.mirrored.contiguous()}, str(tmp)
    )
    path.with_suffix(".json").write_text(
        json.dumps({"kept": features.kept, "failures": features.failures})
    )
    tmp.replace(path)
    return features, False
