"""Fault injection for Iterable API requests, driven by `FaultConfig` per project.

Faults look like what a client meets in production: 500 GenericError, 503 "Request
timeout. Try again later.", 502/504 from the load balancer with an HTML body (not
JSON: clients must not assume every error parses), forced 429s, added latency, and
connections dropped without any response.
"""

from __future__ import annotations

import asyncio
import random

from starlette.responses import HTMLResponse, Response

from liftstack_sandbox.config import FaultConfig, ProjectConfig
from liftstack_sandbox.errors import (
    GENERIC_ERROR_MSG,
    RATE_LIMIT_MSG,
    TIMEOUT_MSG,
    DropConnection,
    IterableError,
)


class FaultRng:
    """One RNG per project, re-created whenever the fault config is changed, so a
    seeded config replays the same choices."""

    def __init__(self) -> None:
        self._rng: random.Random | None = None

    def reset(self) -> None:
        self._rng = None

    def get(self, faults: FaultConfig) -> random.Random:
        if self._rng is None:
            self._rng = random.Random(faults.seed)
        return self._rng


def applies(faults: FaultConfig, path: str) -> bool:
    return faults.paths is None or any(path.startswith(p) for p in faults.paths)


def error_response(status: int, config: ProjectConfig) -> Response:
    """The response Iterable (or its edge) gives for an injected error status."""
    if status == 429:
        headers = {"Retry-After": "1"} if config.retry_after else None
        return IterableError(429, "RateLimitExceeded", RATE_LIMIT_MSG, headers=headers).response()
    if status == 503:
        return IterableError(503, "GenericError", TIMEOUT_MSG).response()
    if status in (502, 504):
        title = "502 Bad Gateway" if status == 502 else "504 Gateway Time-out"
        return HTMLResponse(f"<html><body><h1>{title}</h1></body></html>", status_code=status)
    return IterableError(status, "GenericError", GENERIC_ERROR_MSG).response()


async def inject(config: ProjectConfig, rng_holder: FaultRng, path: str) -> Response | None:
    """Apply the configured faults to one request: raise DropConnection, return an
    error response, or return None to let the request through (after any latency).
    Counters (drop_next, fail_next) count down in the config, so GET config shows
    what is left."""
    faults = config.faults
    if not applies(faults, path):
        return None
    rng = rng_holder.get(faults)
    if faults.latency_ms or faults.latency_jitter_ms:
        delay = faults.latency_ms + rng.random() * faults.latency_jitter_ms
        await asyncio.sleep(delay / 1000)
    if faults.drop_next > 0:
        faults.drop_next -= 1
        raise DropConnection()
    if faults.fail_next > 0:
        faults.fail_next -= 1
        return error_response(faults.fail_status, config)
    if faults.drop_rate and rng.random() < faults.drop_rate:
        raise DropConnection()
    if faults.error_rate and rng.random() < faults.error_rate:
        return error_response(rng.choice(faults.error_statuses), config)
    return None
