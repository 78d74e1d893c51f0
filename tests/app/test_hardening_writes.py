"""Values that cannot be stored, and writes that answer an error, through the real stack: each
is a 422 before anything is written, and nothing it sent is applied later."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from tests.conftest import scene, wait_until

KEY = "writes-key"
HEADERS = {"X-API-Key": KEY}
DEEP = "[" * 1500 + "]" * 1500


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    scene(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("hardening-writes")
    settings = AppSettings(
        qdrant_path=root / "q",
        data_dir=root / "d",
        api_key=KEY,
        attributes="price:float,mileage:integer,color:keyword",
    )
    with TestClient(create_app(settings)) as test_client:
        wait_until(lambda: test_client.get("/readyz").json()["ready"], what="ready")
        yield test_client


def _add(client: TestClient, seed: int, **fields: Any) -> Any:
    return client.post(
        "/api/v1/cars",
        files={"image": ("c.jpg", _jpeg(seed))},
        data={k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()},
        headers=HEADERS,
    )


def _files(client: TestClient) -> set[str]:
    uploads = client.app.state.services.index.ledger.uploads_dir  # type: ignore[attr-defined]
    return {p.name for p in Path(uploads).glob("*")} if Path(uploads).is_dir() else set()


def test_a_patch_that_cannot_be_stored_writes_nothing_and_is_not_applied_later(
    client: TestClient,
) -> None:
    car = _add(client, 1, make="Audi", year="2010").json()
    ledger = client.app.state.services.index.ledger  # type: ignore[attr-defined]
    body = '{"year": 2005, "attributes": {"color": "\\ud800"}}'
    r = client.patch(
        f"/api/v1/cars/{car['id']}",
        content=body,
        headers=HEADERS | {"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 422, r.text
    assert ledger.edit_of(car["id"]) is None
    for bad in ('{"year": 18446744073709551616}', '{"attributes": {"mileage": 1e400}}'):
        r = client.patch(
            f"/api/v1/cars/{car['id']}",
            content=bad,
            headers=HEADERS | {"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 422, (bad, r.text)
    assert ledger.edit_of(car["id"]) is None
    assert client.get(f"/api/v1/cars/{car['id']}").json()["year"] == 2010


@pytest.mark.parametrize(
    "attributes",
    [
        '{"color": "\\ud800"}',
        '{"mileage": 18446744073709551616}',
        '{"price": 1e400}',
        '{"other": ' + "1" + "0" * 400 + "}",
        '{"color": ' + DEEP + "}",
    ],
)
def test_an_add_with_attributes_that_cannot_be_stored_is_a_422_leaving_no_file(
    client: TestClient, attributes: str
) -> None:
    before = _files(client)
    r = _add(client, 2, attributes=attributes)
    assert r.status_code == 422, r.text
    assert _files(client) == before


@pytest.mark.parametrize(
    "where",
    [
        {"mileage": 2**63},
        {"mileage": [2**63]},
        {"year": {"gte": 10**400}},
        {"color": "\ud800"},
    ],
)
def test_filters_with_values_no_index_holds_are_a_422(
    client: TestClient, where: dict[str, Any]
) -> None:
    text = json.dumps(where)  # a lone surrogate is sent as its \\ud800 escape
    for r in (
        client.get("/api/v1/cars", params={"filter": text}),
        client.get("/api/v1/facets", params={"field": "make", "filter": text}),
        client.post("/api/v1/search", files={"image": ("q.jpg", _jpeg(3))}, data={"filter": text}),
    ):
        assert r.status_code == 422, r.text
    deep = client.get("/api/v1/cars", params={"filter": DEEP})
    assert deep.status_code == 422


def test_a_batch_naming_one_external_id_twice_is_refused_whole(client: TestClient) -> None:
    before = _files(client)
    cars = json.dumps([{"external_id": "twice"}, {"external_id": "twice"}])
    r = client.post(
        "/api/v1/cars/batch",
        files=[("images", ("a.jpg", _jpeg(4))), ("images", ("b.jpg", _jpeg(5)))],
        data={"cars": cars},
        headers=HEADERS,
    )
    assert r.status_code == 422 and "twice" in r.text
    assert _files(client) == before


def test_an_external_id_with_a_slash_is_read_back(client: TestClient) -> None:
    car = _add(client, 6, external_id="dealer/42").json()
    r = client.get("/api/v1/cars/external/dealer/42")
    assert r.status_code == 200 and r.json()["id"] == car["id"]


def test_a_cursor_holds_for_the_same_filter_in_another_key_order(client: TestClient) -> None:
    for seed in (7, 8, 9):
        assert _add(client, seed, make="Cursor", attributes='{"color": "red"}').status_code == 201
    first = {"make": "Cursor", "color": "red"}
    page = client.get("/api/v1/cars", params={"filter": json.dumps(first), "limit": 1}).json()
    assert page["next_cursor"]
    other = json.dumps({"color": "red", "make": "Cursor"})
    r = client.get("/api/v1/cars", params={"filter": other, "cursor": page["next_cursor"]})
    assert r.status_code == 200 and len(r.json()["cars"]) == 2


def test_facets_leave_out_values_whose_cars_are_all_deleted(client: TestClient) -> None:
    car = _add(client, 10, make="Vanishing").json()
    assert client.delete(f"/api/v1/cars/{car['id']}", headers=HEADERS).status_code == 204
    values = client.get("/api/v1/facets", params={"field": "make"}).json()["values"]
    assert all(v["count"] > 0 for v in values)
    assert "Vanishing" not in {v["value"] for v in values}


def test_facets_of_declared_attributes_on_a_store_built_without_them(tmp_path: Path) -> None:
    """`carsearch index` run without CARSEARCH_ATTRIBUTES, the service with them: the service
    adds the payload indexes its facets need."""
    from carembed.embedder import Embedder
    from carembed.model import build_model
    from indexer.index import CarIndex
    from indexer.settings import StoreSettings
    from tests.indexer.conftest import make_gallery

    gallery = make_gallery(tmp_path / "gallery")
    index = CarIndex.open(StoreSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d"))
    index.build(Embedder(build_model()), gallery, progress=False)
    index.close()
    settings = AppSettings(
        qdrant_path=tmp_path / "q", data_dir=tmp_path / "d", api_key=KEY, attributes="color:keyword"
    )
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").json()["ready"], what="ready")
        assert _add(client, 11, attributes='{"color": "blue"}').status_code == 201
        r = client.get("/api/v1/facets", params={"field": "color"})
        assert r.status_code == 200, r.text
        assert r.json()["values"] == [{"value": "blue", "count": 1}]
