from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from carembed.embedder import Embedder
from carembed.model import build_model
from tests.conftest import scene

CLASSES = ["Audi_TTS_Coupe_2012", "BMW_M3_Coupe_2012", "Tesla_Model_S_Sedan_2012"]


def make_gallery(root: Path, per_class: int = 3) -> Path:
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            scene(100 * c + i).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    return make_gallery(tmp_path / "gallery")


@pytest.fixture(scope="session")
def small_embedder() -> Embedder:
    """MobileNetV2: the fastest offline backbone, enough to tell generated pictures apart."""
    return Embedder(build_model("mobilenet_v2"), batch_size=4)


@pytest.fixture(params=["memory", "path", "server"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    if request.param == "memory":
        qdrant = QdrantClient(location=":memory:")
    elif request.param == "path":
        qdrant = QdrantClient(path=str(tmp_path / "qdrant"))
    else:
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip("QDRANT_URL is not set: no Qdrant server to test against")
        qdrant = QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
        for c in qdrant.get_collections().collections:
            if c.name.startswith("cars-test"):
                qdrant.delete_collection(c.name)
    yield qdrant
    qdrant.close()
