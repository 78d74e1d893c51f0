"""The OpenAPI description as client generators need it: operation ids are the routes' names,
every multipart body is one flat object schema, its file parts binary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.main import create_app
from app.settings import AppSettings


def _spec(tmp_path: Path) -> dict[str, Any]:
    app = create_app(AppSettings(data_dir=tmp_path / "d", qdrant_path=tmp_path / "q"))
    return app.openapi()


def test_operation_ids_are_the_routes_names(tmp_path: Path) -> None:
    ids = {
        (method.upper(), path): op["operationId"]
        for path, ops in _spec(tmp_path)["paths"].items()
        for method, op in ops.items()
    }
    assert ids[("POST", "/api/v1/search")] == "search"
    assert ids[("POST", "/api/v1/identify")] == "identify"
    assert ids[("POST", "/api/v1/cars")] == "add_car"
    assert ids[("GET", "/api/v1/cars/{car_id}")] == "get_car"
    assert ids[("DELETE", "/api/v1/cars/{car_id}")] == "delete_car"
    assert ids[("POST", "/api/v1/search/batch")] == "search_batch"
    assert ids[("GET", "/api/v1/cars")] == "list_cars"
    assert ids[("PATCH", "/api/v1/cars/{car_id}")] == "patch_car"
    assert ids[("POST", "/api/v1/cars/batch")] == "add_cars"
    assert ids[("GET", "/api/v1/facets")] == "facets"
    assert ids[("GET", "/api/v1/cars/external/{external_id}")] == "get_car_by_external_id"
    assert len(set(ids.values())) == len(ids)


def test_every_multipart_body_is_flat_with_binary_files(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    schemas = spec["components"]["schemas"]
    bodies = [
        op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
        for ops in spec["paths"].values()
        for op in ops.values()
        if "multipart/form-data" in op.get("requestBody", {}).get("content", {})
    ]
    assert set(bodies) == {
        "Body_search",
        "Body_identify",
        "Body_embed",
        "Body_search_batch",
        "Body_add_car",
        "Body_add_cars",
        "Body_add_photos",
    }
    for name in bodies:
        body = schemas[name]
        assert "allOf" not in body, name
        files = {
            key: prop.get("items", prop)
            for key, prop in body["properties"].items()
            if key in ("image", "images")
        }
        assert files and all(f["format"] == "binary" for f in files.values()), name
    search = schemas["Body_search"]
    assert {"image", "limit", "make", "group_by"} <= set(search["properties"])
    assert search["required"] == []  # image, or images


def test_model_version_is_a_deprecated_name_of_the_embedding_version(tmp_path: Path) -> None:
    from app.schemas import EmbedResponse

    schemas = _spec(tmp_path)["components"]["schemas"]
    for name in ("SearchResponse", "EmbedResponse", "Car"):
        properties = schemas[name]["properties"]
        assert "deprecated" not in properties["embedding_version"], name
        assert properties["model_version"]["deprecated"] is True, name
    body = EmbedResponse(vector=[1.0], dim=1, embedding_version="m-1-2-int8").model_dump()
    assert body["model_version"] == body["embedding_version"] == "m-1-2-int8"
