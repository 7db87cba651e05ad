"""What to tell the user when Iterable (or our own plumbing) fails, as one mapping used
both for HTTP answers and for a failed sync's record.

Iterable messages are safe to show: the client scrubs the key from them.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError

from liftstack_shared.credentials import ConnectionNotFound, CredentialsUnavailable
from liftstack_shared.errors import ApiError
from liftstack_shared.iterable import (
    IterableAuthError,
    IterableBadRequest,
    IterableError,
    IterableNotFound,
    IterableRateLimited,
    IterableUnavailable,
)


def audience_not_found(list_id: int) -> ApiError:
    return ApiError(
        404,
        "audience_not_found",
        f"Iterable list {list_id} does not exist in this connection's Iterable project (it may have been deleted).",
    )


def to_api_error(exc: BaseException, list_id: int | None = None) -> ApiError:
    """The HTTP answer for a failure. Unknown exceptions become a generic 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ConnectionNotFound):
        return ApiError(404, "connection_not_found", "No such connection in this workspace.")
    if isinstance(exc, CredentialsUnavailable):
        return ApiError(
            503,
            "connections_unavailable",
            "The connections service did not answer; try again shortly.",
        )
    if isinstance(exc, IterableAuthError):
        # 403, not 401: the caller is authenticated; the connection's key is not
        # allowed. The code tells the two apart.
        return ApiError(
            403,
            "iterable_permission_denied",
            f"The connection's Iterable API key may not read lists and their members"
            f" (Iterable answered HTTP {exc.status}: {exc.message}). Use a server-side or"
            " read-only key of this project, and check it is enabled.",
        )
    if isinstance(exc, IterableNotFound) and list_id is not None:
        return audience_not_found(list_id)
    if isinstance(exc, IterableRateLimited):
        return ApiError(
            429,
            "iterable_rate_limited",
            "Iterable's rate limit for this project is exhausted (it is shared with the"
            " project's other tools); try again in a minute.",
        )
    if isinstance(exc, IterableUnavailable):
        return ApiError(
            503,
            "iterable_unavailable",
            f"Iterable is not answering ({exc.message}); try again later.",
        )
    if isinstance(exc, IterableBadRequest):
        return ApiError(502, "iterable_rejected", f"Iterable rejected the request: {exc.message}")
    if isinstance(exc, IterableError):
        return ApiError(502, "iterable_error", f"Unexpected answer from Iterable: {exc.message}")
    if isinstance(exc, KafkaError):
        return ApiError(
            503,
            "kafka_unavailable",
            f"Could not publish to Kafka ({type(exc).__name__}); retry the sync to resume.",
        )
    return ApiError(500, "internal_error", "Internal error.")


# Failures with a clear explanation; anything else is a bug and is logged as such.
KNOWN_FAILURES: tuple[type[BaseException], ...] = (
    ApiError,
    ConnectionNotFound,
    CredentialsUnavailable,
    IterableError,
    KafkaError,
)


def is_known_failure(exc: BaseException) -> bool:
    return isinstance(exc, KNOWN_FAILURES)
