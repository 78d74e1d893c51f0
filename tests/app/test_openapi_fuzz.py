"""Property-based requests generated from the service's own OpenAPI spec find no 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from app.main import create_app  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from tests.indexer.conftest import make_gallery  # noqa: E402


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        AppSettings(
            gallery=make_gallery(root / "gallery", per_class=1),
            qdrant_path=root / "q",
            data_dir=root / "d",
            api_key="fuzz-key",
            engine="torch",
        )
    )
    with TestClient(app) as client:
        yield client


@pytest.mark.slow
def test_no_server_errors_for_generated_requests(app_client: TestClient) -> None:
    schema = schemathesis.openapi.from_dict(app_client.get("/openapi.json").json())
    failures: list[str] = []
    past_the_key: list[str] = []  # writes that reached their body's checks

    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=op.as_strategy())
        def check(case: object) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://testserver")  # type: ignore[attr-defined]
            headers = {
                k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "x-api-key"
            }
            kwargs["headers"] = headers | {"X-API-Key": "fuzz-key"}  # past the key: the body
            response = app_client.request(**kwargs)
            if case.method in ("POST", "DELETE") and "/cars" in case.formatted_path:  # type: ignore[attr-defined]
                assert response.status_code != 403, response.text
                past_the_key.append(case.method)  # type: ignore[attr-defined]
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")  # type: ignore[attr-defined]

        check()
    assert not failures, failures
    assert {"POST", "DELETE"} <= set(past_the_key)  # the add-car body was fuzzed too
