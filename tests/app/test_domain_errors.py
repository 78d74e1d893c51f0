"""The index's errors answered by the exception handlers, and the same mapping for a batch's
items."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import domain_errors, problems
from app.domain_errors import DOMAIN_ERRORS, problem_of
from indexer.cars import NoSuchPhoto
from indexer.engines.base import CollectionHeld, StoreError
from indexer.fields import FieldError
from indexer.listing import ExternalIdTaken
from indexer.served import IndexNotReady

EXPECTED = [
    (FieldError("year is a number"), 422, "/problems/invalid-request"),
    (NoSuchPhoto("c", "p"), 404, "/problems/not-found"),
    (ExternalIdTaken("listing-7 is car c"), 409, "/problems/external-id-taken"),
    (IndexNotReady("v1"), 503, "/problems/unavailable"),
    (StoreError("down"), 503, "/problems/unavailable"),
    (CollectionHeld("cars__v1 is held"), 503, "/problems/unavailable"),  # a subclass
]


@pytest.mark.parametrize(("error", "status", "kind"), EXPECTED)
def test_a_route_raising_an_index_error_answers_its_problem(
    error: Exception, status: int, kind: str
) -> None:
    app = FastAPI()
    problems.install(app)
    domain_errors.install(app)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    response = TestClient(app, raise_server_exceptions=False).get("/fails")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == kind
    if status == 503:
        assert response.headers["retry-after"] == "5"
    else:
        assert response.json()["detail"] == str(error)


def test_every_domain_error_has_a_problem_and_nothing_else_does() -> None:
    for kind in DOMAIN_ERRORS:
        error = kind.__new__(kind)  # their own constructors take what they report
        Exception.__init__(error, "x")
        assert problem_of(error).status in (404, 409, 422, 503)
    with pytest.raises(TypeError):
        problem_of(ValueError("not the index's"))
