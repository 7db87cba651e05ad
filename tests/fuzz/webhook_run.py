"""Driving a running gateway with generated webhook bodies, and the pass criteria
(used by tests/fuzz/test_webhooks.py and bench/fuzz_webhooks.py):

- no 5xx except 503 (real unavailability);
- every response matches the gateway's own OpenAPI document (200 -> its response
  schema, anything else -> the error schema), as JSON;
- every event answered 200 `published` is processed by every consumer of
  `engagement.events` (the Events page read model, the console's results) or
  dead-lettered by it;
- no consumer lag left afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, Phase, given, seed, settings
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from liftstack_shared.connections_client import InternalConnection, Region
from liftstack_shared.messages import EventType
from tests.fuzz.webhook_payloads import webhook_bodies


def fuzz_connection(connection_id: str, workspace_id: str, name: str, secret: str) -> InternalConnection:
    """An active connection taking every event type, guarded by `secret` (the fuzz
    test and the fuzz bench both post to it)."""
    return InternalConnection(
        connection_id=connection_id,
        workspace_id=workspace_id,
        name=name,
        region=Region.US,
        api_key=SecretStr("0" * 32),
        webhook_secrets=[SecretStr(secret)],
        event_types=[t.value for t in EventType],
        status="active",
    )


WEBHOOK_PATH = "/webhooks/iterable/{token}"


def generate_bodies(count: int, seed_value: int) -> list[bytes]:
    """`count` bodies, the same ones for the same seed."""
    bodies: list[bytes] = []

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(body=webhook_bodies())
    def collect(body: bytes) -> None:
        bodies.append(body)

    collect()
    return bodies


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503
    schema_violations: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)  # no HTTP answer at all
    published: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_other_than_503": len(self.server_errors),
            "schema_violations": len(self.schema_violations),
            "transport_errors": len(self.transport_errors),
            "published": len(self.published),
            "codes": dict(self.codes.most_common()),
            "elapsed_s": round(self.elapsed_s, 1),
        }


class ResponseSchemas:
    """The webhook operation's response schemas from the gateway's /openapi.json."""

    def __init__(self, document: dict[str, Any]) -> None:
        jsonschema.validators.validator_for({}).check_schema({})  # jsonschema is usable
        responses = document["paths"][WEBHOOK_PATH]["post"]["responses"]
        self._by_status = {
            status: self._validator(document, spec["content"]["application/json"]["schema"])
            for status, spec in responses.items()
            if "content" in spec
        }

    @staticmethod
    def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator({**schema, "components": document["components"]})

    def problems(self, response: httpx.Response) -> str | None:
        if not response.headers.get("content-type", "").startswith("application/json"):
            return f"{response.status_code}: content-type {response.headers.get('content-type')!r}"
        validator = self._by_status.get(str(response.status_code), self._by_status["default"])
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code}: body is not JSON"
        errors = list(validator.iter_errors(body))
        return f"{response.status_code}: {errors[0].message}" if errors else None


async def post_bodies(
    base_url: str,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    concurrency: int,
) -> FuzzReport:
    report = FuzzReport()
    # Idle connections are dropped by the client before uvicorn's 5 s keep-alive
    # ends, so a request never races the server closing its connection.
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        schemas = ResponseSchemas((await client.get("/openapi.json")).json())
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                try:
                    response = await client.post(
                        path, content=body, headers={"Content-Type": "application/json", **headers}
                    )
                except httpx.TransportError as exc:
                    report.cases += 1
                    report.transport_errors.append(f"{type(exc).__name__} for {len(body)} bytes {body[:80]!r}")
                    continue
                report.cases += 1
                report.statuses[response.status_code] += 1
                if response.status_code >= 500 and response.status_code != 503:
                    report.server_errors.append(f"{response.status_code} for {body[:120]!r}")
                problem = schemas.problems(response)
                if problem:
                    report.schema_violations.append(f"{problem} for {body[:120]!r}")
                    continue
                data = response.json()
                if response.status_code == 200:
                    report.codes[data["status"]] += 1
                    if data["status"] == "published":
                        report.published.add(data["event_id"])
                else:
                    report.codes[data["error"]["code"]] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        report.elapsed_s = time.monotonic() - started
    return report


async def dead_lettered_event_ids(bootstrap: str, topic: str) -> dict[str, set[str]]:
    """consumer group -> event ids it dead-lettered (from the letters' payloads)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, set[str]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            await consumer._client.force_metadata_update()  # a fresh client
            partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + 30

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while time.monotonic() < deadline and await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    letter = json.loads(record.value)
                    try:
                        event_id = json.loads(letter["payload"]).get("event_id")
                    except (ValueError, AttributeError):
                        event_id = None
                    if event_id:
                        found.setdefault(letter["consumer"], set()).add(event_id)
    finally:
        await consumer.stop()
    return found


async def missing_from(db: AsyncDatabase, collection: str, event_ids: set[str]) -> set[str]:
    ids = list(event_ids)
    seen: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        seen.update([doc["_id"] async for doc in db[collection].find({"_id": {"$in": chunk}}, {"_id": 1})])
    return event_ids - seen


async def consumer_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages on `topics` the group has not committed past."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic) or set()
        ]
        end = await consumer.end_offsets(partitions)
        return sum(
            end[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp in partitions
        )
    finally:
        await consumer.stop()
        await admin.close()


async def wait_until_processed(
    check: Any,
    timeout_s: float,
    interval_s: float = 1.0,
) -> Any:
    """Poll `check()` (returning a falsy value when done) until done or timeout;
    returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if not result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval_s)
