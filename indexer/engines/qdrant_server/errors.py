"""What a Qdrant server's errors mean: worth retrying, or a missing collection."""

from __future__ import annotations


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the server was unreachable, timed out, or said so (429/502/503/504).
    Client errors (bad request, not found, conflict) are not."""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in (429, 502, 503, 504)
    if isinstance(
        exc, ResponseHandlingException | httpx.TransportError | ConnectionError | TimeoutError
    ):
        return True
    code = getattr(exc, "code", None)  # grpc.RpcError
    if callable(code):
        return str(code()).endswith(("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"))
    return False


def not_found(exc: BaseException) -> bool:
    """A missing collection: the server's 404, or the ValueError of qdrant-client's local mode."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 404
    return (
        isinstance(exc, ValueError)
        and str(exc).startswith("Collection ")
        and "not found" in str(exc)
    )
