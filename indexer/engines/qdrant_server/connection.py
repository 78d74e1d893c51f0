"""A connection to a Qdrant server or cluster: the client, and every call with a timeout and
transient failures retried with exponential backoff (``indexer.engines.qdrant_server.errors``
says which are)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.engines.base import CollectionMissing, StoreError, retries_allowed
from indexer.engines.qdrant_server.errors import is_transient, not_found
from indexer.settings import StoreSettings

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ServerConnection:
    def __init__(self, settings: StoreSettings, client: QdrantClient | None = None) -> None:
        """``client``: one client for every call (qdrant-client's local mode stands in for a
        server in the tests); by default two for ``settings.qdrant_url``, one for background
        work and one, with a timeout within a request's deadline, for requests."""
        self._settings = settings
        self._background = client or self._client(settings.qdrant_timeout_s)
        self._request = client or self._client(settings.qdrant_request_timeout_s)

    def _client(self, timeout_s: float) -> QdrantClient:
        from qdrant_client import QdrantClient

        settings = self._settings
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(
            url=settings.qdrant_url,
            api_key=key,
            timeout=max(1, round(timeout_s)),
            prefer_grpc=settings.qdrant_prefer_grpc,
            check_compatibility=False,
        )

    @property
    def client(self) -> QdrantClient:
        """The client of this call: inside ``single_attempt`` (a request) the one whose timeout
        ends within the request's deadline, so no store call outlives its answer by much;
        else the background one."""
        return self._background if retries_allowed() else self._request

    def close(self) -> None:
        self._background.close()
        if self._request is not self._background:
            self._request.close()

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retried on transient errors with jittered exponential
        backoff (none inside ``indexer.engines.base.single_attempt``: a request's deadline) and then
        StoreError (the server is down); a missing collection raises CollectionMissing; other
        errors (a bad request, a bug) as they are."""
        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        retries = self._settings.qdrant_retries if retries_allowed() else 0
        backoff = self._settings.qdrant_backoff_s
        attempts = Retrying(
            stop=stop_after_attempt(retries + 1),
            wait=wait_exponential_jitter(multiplier=backoff, jitter=backoff),
            retry=retry_if_exception(lambda exc: is_transient(exc) and not not_found(exc)),
            before_sleep=lambda state: logger.warning(
                "qdrant %s failed (%s); retry %d",
                what,
                type(state.outcome.exception()).__name__ if state.outcome else "?",
                state.attempt_number,
            ),
        )
        try:
            return attempts(fn, *args, **kwargs)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise StoreError(
                f"the Qdrant server did not answer ({what}, {type(last).__name__}, "
                f"{retries + 1} tries)"
            ) from last
        except Exception as exc:
            if not_found(exc):
                raise CollectionMissing(what) from exc
            raise

    def collections(self) -> list[str]:
        return sorted(
            c.name for c in self.call("collections", self.client.get_collections).collections
        )
