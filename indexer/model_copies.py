"""The index knows its model: every build stores a copy of the servable model folder that made
its vectors (``config.json`` + safetensors, a few MB) in the store, under the model version.
A service can then load the model of whatever collection the alias names, without a restart
and without access to the folder the operator trained into."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from carembed.artifact import (
    CONFIG_FILE,
    INT8_FILE,
    config_json,
    int8_graph_of,
    load_model,
    save_model,
)
from carembed.atomic import fsync_path, write_atomically
from carembed.model import CarEmbeddingModel
from indexer.engines.base import ModelCopyStore

logger = logging.getLogger(__name__)


class ModelCopies:
    def __init__(self, store: ModelCopyStore, cache_dir: Path) -> None:
        self._store = store
        self.cache_dir = cache_dir  # where copies are unpacked to be loaded

    def save(self, model: CarEmbeddingModel) -> str:
        """Store the model under its version; returns the version. A copy of that version whose
        descriptive part differs (a re-fitted calibration) is replaced."""
        version = model.version()
        expected = {CONFIG_FILE: config_json(model, version)}  # the version hashes the weights
        int8 = int8_graph_of(model, version)
        if int8 is not None:
            expected[INT8_FILE] = int8.read_bytes()
        if self._store.get(version, list(expected)) == expected:
            return version
        with tempfile.TemporaryDirectory(prefix="carsearch-model-") as tmp:
            save_model(model, Path(tmp))
            files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        self._store.put(version, files)
        logger.info(
            "model %s stored with the index (%d bytes)", version, sum(map(len, files.values()))
        )
        return version

    def versions(self) -> list[str]:
        """The versions of the models stored with the index."""
        return self._store.versions()

    def config(self, version: str) -> dict[str, Any] | None:
        """The ``config.json`` of the stored model ``version`` (None when there is none)."""
        files = self._store.get(version, [CONFIG_FILE])
        if files is None or CONFIG_FILE not in files:
            return None
        return dict(json.loads(files[CONFIG_FILE]))

    def export(self, version: str, folder: Path) -> str:
        """Write the stored model ``version`` as a servable folder; LookupError (naming the
        stored versions) when there is none."""
        model = self.load(version)
        if model is None:
            stored = ", ".join(self.versions()) or "none"
            raise LookupError(f"no model {version} is stored with the index (stored: {stored})")
        return save_model(model, folder)

    def load(self, version: str, device: str = "cpu") -> CarEmbeddingModel | None:
        """The stored model of this version, or None when the store has no copy."""
        files = self._store.get(version)
        if files is None:
            return None
        folder = self.cache_dir / version
        if any(_differs(folder / name, data) for name, data in files.items()):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.cache_dir))
            try:
                for name, data in files.items():
                    write_atomically(staging / Path(name).name, data)
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)
                fsync_path(self.cache_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        model = load_model(folder, device)
        if model.version() != version:
            logger.warning(
                "the model stored as %s is %s by this carsearch's model identity (stored by an "
                "earlier one): its collections are rebuilt by the next build",
                version,
                model.version(),
            )
        return model


def _differs(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size != len(data) or path.read_bytes() != data
    except FileNotFoundError:
        return True
