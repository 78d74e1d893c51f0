"""The README's retraining loop as written, beside a running service in the set-up users run by
default: the embedded store, the shipped model's int8 collection live, the quality gate on.
Each command runs in another process; the service follows what the alias names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from carembed.artifact import save_model
from carembed.identity import embedding_version
from carembed.model import build_model
from tests.conftest import wait_until
from tests.training.conftest import make_shapes_dataset, quick_train_args, shape_image

KEY = "loop-key"


def _carsearch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carsearch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _store(kind: str, tmp_path: Path) -> dict[str, str]:
    """The embedded store in a folder, or the server at QDRANT_URL (a fresh alias)."""
    if kind == "edge":
        return {"qdrant_path": str(tmp_path / "q")}
    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to test against")
    key = {"qdrant_api_key": os.environ["QDRANT_API_KEY"]} if "QDRANT_API_KEY" in os.environ else {}
    return {"qdrant_url": url, "alias": f"loop-{os.getpid()}-{time.monotonic_ns()}"} | key


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["edge", "server"])
def test_the_readme_loop_beside_a_running_service_with_the_gate_on(
    tmp_path: Path, kind: str
) -> None:
    store = _store(kind, tmp_path)
    gallery = tmp_path / "gallery"  # 8 classes no model trained on
    for cls in range(16, 24):
        (gallery / f"Shape{cls} Sedan 2012").mkdir(parents=True)
        for i in range(10):
            shape_image(cls, 1000 * cls + i).save(gallery / f"Shape{cls} Sedan 2012" / f"{i}.png")
    env = os.environ | {f"CARSEARCH_{key.upper()}": value for key, value in store.items()}
    env |= {
        "CARSEARCH_DATA_DIR": str(tmp_path / "d"),
        "CARSEARCH_INT8": "true",
        "CARSEARCH_MODEL_DIR": "",  # the shipped model
    }
    index = ["index", "--gallery", str(gallery), "--workers", "0"]
    first = _carsearch(env, *index)
    assert first.returncode == 0, first.stderr
    worse = save_model(build_model("mobilenet_v2", head="linear", embedding_dim=4), tmp_path / "w")
    shapes = make_shapes_dataset(tmp_path / "shapes", train_classes=16, val_classes=0)
    train = quick_train_args(shapes, tmp_path / "better", tmp_path / "c", tmp_path / "runs", 3)
    trained = _carsearch(env, *train)
    assert trained.returncode == 0, trained.stderr
    better = json.loads((tmp_path / "better" / "config.json").read_text())["model_version"]
    settings = AppSettings(
        **store,  # type: ignore[arg-type]
        data_dir=tmp_path / "d",
        api_key=KEY,
        model_dir=None,
        int8=True,
        engine="auto",
        model_poll_s=0.2,
    )
    with TestClient(create_app(settings)) as client:

        def serving(version: str) -> dict[str, Any] | None:
            body: dict[str, Any] = client.get("/readyz").json()
            return body if body["embedding_version"] == version and body["ready"] else None

        shipped = client.get("/readyz").json()
        assert shipped["inference_backend"] == "onnx-int8" and shipped[
            "embedding_version"
        ].endswith("-int8")
        car = client.post(
            "/api/v1/cars",
            files={"image": ("c.png", (gallery / "Shape19 Sedan 2012" / "0.png").read_bytes())},
            data={"make": "Added"},
            headers={"X-API-Key": KEY},
        )
        assert car.status_code == 201, car.text

        exported = _carsearch(env, "export-dataset", "--out", str(tmp_path / "export"))
        assert exported.returncode == 0, exported.stderr  # the service holds the collection
        rows = (tmp_path / "export" / "manifest.csv").read_text().splitlines()
        assert len(rows) == 1 + 79  # the car added has no class name: left out
        missing = _carsearch(env, "export-dataset", "--out", str(tmp_path / "x"), "--gallery", "no")
        assert missing.returncode == 2 and "does not exist" in missing.stderr
        for share in ("1.5", "-1"):
            holdout = ["train", "--from-index", "--out", str(tmp_path / "y"), "--holdout", share]
            bad = _carsearch(env, *holdout)
            assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr

        refused = _carsearch(env, *index, "--model", str(tmp_path / "w"))
        assert refused.returncode == 3, refused.stderr
        assert "Traceback" not in refused.stderr and "refused" in refused.stdout
        assert client.get("/readyz").json()["live_collection"] == shipped["live_collection"]

        forced = _carsearch(env, *index, "--model", str(tmp_path / "w"), "--force")
        assert forced.returncode == 0, forced.stderr
        wait_until(lambda: serving(embedding_version(worse, "float32")), what="the forced model")

        status = _carsearch(env, "index", "status")
        assert status.returncode == 0 and "forced" in status.stdout, status.stdout

        back = _carsearch(env, "index", "rollback")
        assert back.returncode == 0, back.stderr
        wait_until(lambda: serving(shipped["embedding_version"]), what="the rolled-back model")

        passed = _carsearch(env, *index, "--model", str(tmp_path / "better"))
        assert passed.returncode == 0, passed.stderr
        wait_until(lambda: serving(embedding_version(better, "float32")), what="the better model")
        found = client.get(f"/api/v1/cars/{car.json()['id']}")
        assert found.status_code == 200 and found.json()["make"] == "Added"

        listed = _carsearch(env, "model", "list")
        assert listed.returncode == 0
        assert {better, worse} <= set(listed.stdout.split())
