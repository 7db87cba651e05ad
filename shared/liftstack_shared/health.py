"""Dependency checks for `/healthz`, one way for every service.

Each factory returns a `HealthCheck`: an awaitable that raises when the dependency
is not usable. `liftstack_shared.http.run_health_checks` runs them all at once and
cuts each off, so `/healthz` answers within `HEALTH_CHECK_TIMEOUT_S` even when a
dependency hangs. Clients created in a lifespan are passed as a getter so the route
table can be built before the lifespan runs: `mongo_check(lambda: state.mongo)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from liftstack_shared.http import HealthCheck
from liftstack_shared.kafka import kafka_ready
from liftstack_shared.mongo import mongo_ready

KAFKA_PING_TIMEOUT_S = 1.5
T = TypeVar("T")


def _resolve(get: Callable[[], T | None]) -> T:
    value = get()
    if value is None:
        raise RuntimeError("not started")
    return value


def mongo_check(client: Callable[[], AsyncMongoClient[Any] | None]) -> HealthCheck:
    """MongoDB answers a ping."""

    async def check() -> None:
        await mongo_ready(_resolve(client))

    return check


def broker_check(broker: Callable[[], KafkaBroker | None]) -> HealthCheck:
    """A FastStream broker's connection answers."""

    async def check() -> None:
        if not await _resolve(broker).ping(timeout=KAFKA_PING_TIMEOUT_S):
            raise ConnectionError("Kafka did not answer")

    return check


def producer_check(producer: Callable[[], AIOKafkaProducer | None]) -> HealthCheck:
    """An aiokafka producer's client completes a metadata round trip."""

    async def check() -> None:
        await _resolve(producer).client.fetch_all_metadata()

    return check


def bootstrap_check(bootstrap: str) -> HealthCheck:
    """The cluster answers a fresh connection (for services with no long-lived client)."""

    async def check() -> None:
        await kafka_ready(bootstrap, timeout_s=KAFKA_PING_TIMEOUT_S)

    return check
