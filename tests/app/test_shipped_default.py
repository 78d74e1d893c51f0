"""A store built with the zero-shot model keeps serving it under a service that names no model
(whose default is now the shipped model) until the operator rebuilds; ``carsearch index
--gallery G`` with no model then rolls out the shipped model like any retrained one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from carembed.artifact import ZERO_SHOT, load_model, shipped_model_dir
from carembed.identity import embedding_version
from carembed.model import build_model
from tests.conftest import readyz_when
from tests.indexer.conftest import make_gallery


def _wait(client: TestClient, check: object, seconds: float = 120) -> dict[str, object]:
    return readyz_when(client, check, seconds)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_zero_shot_store_keeps_its_model_until_rebuilt_with_the_shipped_one(
    tmp_path: Path,
) -> None:
    gallery = make_gallery(tmp_path / "gallery")
    common = {
        "gallery": gallery,
        "data_dir": tmp_path / "data",
        "qdrant_path": tmp_path / "q",
        "api_key": "k",
        "engine": "torch",
        "model_poll_s": 0.2,
        "model_retire_s": 0.1,
    }
    zero_shot = embedding_version(build_model().version(), "float32")
    shipped = embedding_version(load_model(shipped_model_dir()).version(), "float32")
    with TestClient(create_app(AppSettings(model_dir=Path(ZERO_SHOT), **common))) as client:
        _wait(client, lambda b: b["indexing"]["state"] == "done" and b["points"] == 9)
        assert client.get("/readyz").json()["embedding_version"] == zero_shot

    with TestClient(create_app(AppSettings(model_dir=None, **common))) as client:
        body = _wait(client, lambda b: b["indexing"]["state"] == "done")
        assert body["embedding_version"] == zero_shot
        assert body["points"] == 9
        photo = (gallery / "BMW_M3_Coupe_2012" / "1.jpg").read_bytes()
        hits = client.post("/api/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert hits.status_code == 200 and hits.json()["embedding_version"] == zero_shot

        env = {k: v for k, v in os.environ.items() if k != "CARSEARCH_MODEL_DIR"}
        command = [sys.executable, "-m", "carsearch", "index", "--gallery", str(gallery)]
        store = ["--qdrant-path", str(common["qdrant_path"])]
        data = ["--data-dir", str(common["data_dir"]), "--engine", "torch", "--workers", "0"]
        data += ["--no-gate"]  # the shipped model trained on these classes: nothing to judge on
        subprocess.run([*command, *store, *data], env=env, check=True, timeout=600)

        body = _wait(client, lambda b: b["embedding_version"] == shipped)
        assert body["points"] == 9
        hits = client.post("/api/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert hits.status_code == 200 and hits.json()["embedding_version"] == shipped
