"""Errors the Iterable client raises, classified by HTTP status (never by Iterable's
`code`, which is unreliable: Iterable has answered 400 with `code: "Success"`).

Messages carry Iterable's `msg`, the endpoint and the status, never the API key: the
client scrubs the key out of anything Iterable echoes back before building these.
"""

from __future__ import annotations

from typing import Any


class IterableError(Exception):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        code: str | None = None,
        params: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.params = params

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{where}{status}{self.message}"


class IterableAuthError(IterableError):
    """401/403: bad, disabled or under-privileged key. Never retried."""


class IterableBadRequest(IterableError):
    """400 (and other 4xx without a class of their own): the request itself is wrong.
    Also raised before sending when a body would exceed Iterable's size cap."""


class IterableNotFound(IterableError):
    """404."""


class IterableConflict(IterableError):
    """409: conflicting identity or a GDPR-forgotten user. Never retried."""


class IterableRateLimited(IterableError):
    """429 that persisted through every allowed retry, or a Retry-After longer than
    the client is configured to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class IterableUnavailable(IterableError):
    """5xx, timeouts or connection failures that persisted through every retry, or a
    stream that broke after it had started yielding (it can't be resumed safely)."""
