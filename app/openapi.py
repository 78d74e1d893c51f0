"""The OpenAPI description as client generators read it: operation ids are the routes' names
(``search``, ``identify``, ``add_car``, ...), and every multipart body is one flat object whose
file parts, optional ones too, are ``format: binary`` (FastAPI nests form models under
``allOf`` and marks files with ``contentMediaType`` alone, which generators such as
openapi-python-client drop)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    return route.name


def _is_file(schema: dict[str, Any]) -> bool:
    item = schema.get("items", schema)
    return isinstance(item, dict) and item.get("contentMediaType") == "application/octet-stream"


def _binary(schema: dict[str, Any]) -> None:
    """File parts as ``format: binary``; an optional file part (``anyOf`` it or null) as the
    file part itself, optional by not being required."""
    files = [s for s in schema.get("anyOf", []) if _is_file(s)]
    if files:
        del schema["anyOf"]
        schema |= files[0]
    if schema.get("contentMediaType") == "application/octet-stream":
        schema["format"] = "binary"
    if isinstance(schema.get("items"), dict):
        _binary(schema["items"])


def _flatten(body: dict[str, Any], schemas: dict[str, Any]) -> None:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for part in body.pop("allOf", []):
        model = schemas[part["$ref"].rsplit("/", 1)[1]] if "$ref" in part else part
        properties |= model.get("properties", {})
        required += model.get("required", [])
    body["properties"] = properties | body.get("properties", {})
    body["required"] = sorted(set(required) | set(body.get("required", [])))
    for prop in body["properties"].values():
        _binary(prop)


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the flattened description (built once)."""
    describe = app.openapi

    def flattened() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = describe()
            schemas = spec.get("components", {}).get("schemas", {})
            for operation in (op for ops in spec["paths"].values() for op in ops.values()):
                content = operation.get("requestBody", {}).get("content", {})
                form = content.get("multipart/form-data", {}).get("schema", {})
                if "$ref" in form:
                    _flatten(schemas[form["$ref"].rsplit("/", 1)[1]], schemas)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = flattened  # type: ignore[method-assign]
