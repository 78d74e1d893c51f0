"""Prometheus metrics of one app instance (its own registry: no global state)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "carsearch_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "carsearch_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "carsearch_stage_seconds",
            "Time per stage of a search",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "carsearch_batch_size",
            "Images per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "carsearch_in_flight_requests", "Requests being served", registry=self.registry
        )
        self.active = 0  # the same count, readable without touching the gauge's internals


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """A fixed set of labels: a made-up method (h11 accepts any token) counts as ``other``."""
    return method if method in KNOWN_METHODS else "other"


def route_label(route: object) -> str:
    """The route's template (``/api/v1/cars/{car_id}``), never the raw path."""
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


CLIENT_CLOSED = 499  # the client closed the connection before it was answered (nginx's code)


class RequestMetrics:
    """ASGI middleware: requests, latency and in-flight count by route template and method.

    Plain ASGI (not ``BaseHTTPMiddleware``, which runs every request in an extra task and
    copies the response through a stream): it only watches the response's status go by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: Any = getattr(scope.get("app"), "state", None)
        services = getattr(state, "services", None)
        if scope["type"] != "http" or services is None:
            await self.app(scope, receive, send)
            return
        metrics: Metrics = services.metrics
        status, answered, gone = 500, False, False

        async def watch(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
            await send(message)

        async def listen() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or (message["type"] == "http.disconnect" and not answered)
            return message

        metrics.in_flight.inc()
        metrics.active += 1
        started = time.perf_counter()
        try:
            await self.app(scope, listen, watch)
        finally:
            if gone:  # the client left before its answer: not a bad request of its own
                status = CLIENT_CLOSED
            metrics.in_flight.dec()
            metrics.active -= 1
            route, method = route_label(scope.get("route")), method_label(scope["method"])
            metrics.requests.labels(route, method, str(status)).inc()
            metrics.latency.labels(route, method).observe(time.perf_counter() - started)
