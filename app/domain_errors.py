"""The index's errors as problem details, mapped once: the exception handlers answer them for
every route, and a batch answers each item's own with the same mapping."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.problems import Problem, problem_response, unavailable
from indexer import (
    CollectionMissing,
    CursorError,
    ExternalIdTaken,
    FieldError,
    IndexNotReady,
    NoSuchCar,
    NoSuchPhoto,
    OlderStore,
    PhotoReused,
    StoreError,
    TooManyPhotos,
    UnknownCars,
)

_AS_PROBLEMS: dict[type[Exception], tuple[int, str, str]] = {
    FieldError: (422, "invalid-request", "Invalid request"),
    CursorError: (422, "invalid-request", "Invalid request"),
    UnknownCars: (422, "invalid-request", "Invalid request"),
    TooManyPhotos: (422, "invalid-request", "Invalid request"),
    NoSuchCar: (404, "not-found", "No such car"),
    NoSuchPhoto: (404, "not-found", "No such photo"),
    ExternalIdTaken: (409, "external-id-taken", "External id in use"),
    PhotoReused: (409, "photo-reused", "Photo already in another car"),
    OlderStore: (503, "older-index", "Index written by an older carsearch"),
}
_UNAVAILABLE: dict[type[Exception], str] = {
    IndexNotReady: "the index for this model is being built",
    CollectionMissing: "the index for this model is being built",
    StoreError: "the vector store is not reachable",
}
DOMAIN_ERRORS: tuple[type[Exception], ...] = (*_AS_PROBLEMS, *_UNAVAILABLE)
ANSWERED: tuple[type[Exception], ...] = (Problem, *DOMAIN_ERRORS)
"""What a batch item can answer with a problem of its own."""


def problem_of(exc: Exception) -> Problem:
    """The problem that answers ``exc`` (a Problem itself, or one of ``DOMAIN_ERRORS``)."""
    if isinstance(exc, Problem):
        return exc
    for kind in type(exc).__mro__:
        if kind in _AS_PROBLEMS:
            status, slug, title = _AS_PROBLEMS[kind]
            return Problem(status, slug, title, str(exc))
        if kind in _UNAVAILABLE:
            return unavailable(_UNAVAILABLE[kind])
    raise TypeError(f"{type(exc).__name__} is not a domain error") from exc


def install(app: FastAPI) -> None:
    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        problem = problem_of(exc)
        return problem_response(
            problem.status, problem.slug, problem.title, problem.detail, problem.retry_after
        )

    for kind in DOMAIN_ERRORS:
        app.add_exception_handler(kind, _domain)
