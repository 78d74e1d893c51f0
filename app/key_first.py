"""The API key of a route that needs one is checked before the request's body is read: a
wrong key gets its 403 at once, not after a 10 MB upload has arrived."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app import problems
from app.deps import key_problem, require_key, require_read_key
from app.settings import AppSettings


def _needs(route: BaseRoute) -> bool | None:
    """True: the route needs the write key; False: the read key; None: neither."""
    dependant = getattr(route, "dependant", None)
    calls = {d.call for d in dependant.dependencies} if dependant is not None else set()
    if require_key in calls:
        return True
    return False if require_read_key in calls else None


class KeyBeforeBody:
    """Answers 403 for a route that needs a key the request does not carry (the routes'
    own dependencies say which), before the app reads the body."""

    def __init__(self, app: ASGIApp, routers: Sequence[APIRouter], settings: AppSettings) -> None:
        self.app, self.settings = app, settings
        # Only the routes that need a key with these settings are matched per request.
        routes = [(route, _needs(route)) for router in routers for route in router.routes]
        self.routes = [
            (route, write)
            for route, write in routes
            if write or (write is False and settings.read_api_key is not None)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            write = next(
                (w for r, w in self.routes if r.matches(scope)[0] == Match.FULL),
                None,
            )
            if write is not None:
                given = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"]
                problem = key_problem(self.settings, given, write)
                if problem is not None:
                    response = problems.problem_response(
                        problem.status, problem.slug, problem.title, problem.detail
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
