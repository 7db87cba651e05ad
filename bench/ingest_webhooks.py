"""Benchmark: sustained Iterable webhook requests/s through the ingest gateway, each
answered only after Kafka acknowledged the event (acks=all, idempotent producer).

    eval "$(deploy/local/infra env)"
    .venv/bin/python bench/ingest_webhooks.py [--requests 20000] [--duration 60]
        [--concurrency 64] [--with-consumer]

The gateway runs as a separate uvicorn process (this script with `--serve`), with an
in-memory connection lookup (in production the lookup is cached, so this is the
same hot path), on its own topic prefix and database. The load generator is asyncio
+ httpx over loopback, bounded by a request count and a time limit. At the end it
checks that Kafka holds exactly one message per 200 answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-webhook-token"
SECRET = "bench-webhook-secret-value"


# ------------------------------------------------------------------ gateway process


def serve(args: argparse.Namespace) -> None:
    import uvicorn
    from pydantic import SecretStr

    from liftstack_ingest.app import create_app
    from liftstack_ingest.lookup import InMemoryConnections
    from liftstack_ingest.settings import IngestSettings
    from liftstack_shared.connections_client import InternalConnection, Region
    from liftstack_shared.logging import setup_logging
    from liftstack_shared.messages import EventType

    settings = IngestSettings(
        topic_prefix=args.prefix,
        mongo_db=args.db,
        port=args.port,
        events_consumer_enabled=args.with_consumer,
    )
    connections = InMemoryConnections(
        {
            TOKEN: InternalConnection(
                connection_id="conn_bench",
                workspace_id="ws_bench",
                name="Bench",
                region=Region.US,
                api_key=SecretStr("0" * 32),
                webhook_secrets=[SecretStr(SECRET)],
                event_types=[t.value for t in EventType],
                status="connected",
            )
        }
    )
    setup_logging("WARNING")
    uvicorn.run(create_app(settings, connections), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


# ------------------------------------------------------------------ load generator


def payload(i: int, run: str) -> bytes:
    return json.dumps(
        {
            "email": f"user{i % 5000}@bench.example.com",
            "eventName": "emailOpen" if i % 3 else "emailClick",
            "dataFields": {
                "campaignId": 59667,
                "templateId": 93849,
                "messageId": f"{run}{i:012x}",
                "createdAt": "2024-05-01 10:00:00 +00:00",
                "url": "https://example.com/x",
                "emailId": f"c59667:t93849:user{i}@bench.example.com",
                "seq": i,
            },
        }
    ).encode()


async def load(url: str, total: int, duration_s: float, concurrency: int, warmup: int) -> dict:
    run = secrets.token_hex(4)
    headers = {"Authorization": f"OAuth2 {SECRET}", "Content-Type": "application/json"}
    path = f"/webhooks/iterable/{TOKEN}"
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    next_i = 0
    # One client (one keep-alive connection) per worker: a single httpx pool shared
    # by many concurrent requests costs milliseconds of client CPU per request and
    # would make the load generator, not the gateway, the bottleneck.
    clients = [
        httpx.AsyncClient(base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=1))
        for _ in range(concurrency)
    ]
    try:
        # Warm-up (connections, Kafka metadata): not measured.
        for start in range(0, warmup, concurrency):
            await asyncio.gather(
                *(
                    c.post(path, content=payload(-1 - start - k, run), headers=headers)
                    for k, c in enumerate(clients[: min(concurrency, warmup - start)])
                )
            )
        cpu_before = await gateway_cpu_s(clients[0])
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal next_i
            while next_i < total and time.perf_counter() < deadline:
                i = next_i
                next_i += 1
                t0 = time.perf_counter()
                try:
                    status = (await client.post(path, content=payload(i, run), headers=headers)).status_code
                except httpx.HTTPError:
                    status = 0
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1

        await asyncio.gather(*(worker(c) for c in clients))
        elapsed = time.perf_counter() - started
        gateway_cpu = await gateway_cpu_s(clients[0]) - cpu_before
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "ok_per_s": round(statuses[200] / elapsed, 1),
        "p50_ms": round(pct(0.50), 1),
        "p90_ms": round(pct(0.90), 1),
        "p99_ms": round(pct(0.99), 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "statuses": dict(statuses),
        "warmup": warmup,
        # Is the gateway the bottleneck? (1.0 = one full core; it is one process.)
        "gateway_cores_used": round(gateway_cpu / elapsed, 2),
        "gateway_cpu_ms_per_request": round(gateway_cpu * 1000 / max(1, len(latencies)), 2),
    }


async def gateway_cpu_s(client: httpx.AsyncClient) -> float:
    """The gateway process's CPU seconds so far, from its Prometheus /metrics."""
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return 0.0


async def kafka_count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from liftstack_shared.topics import ENGAGEMENT_EVENTS

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(ENGAGEMENT_EVENTS.partitions)]
        begin, end = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        return sum(end[p] - begin[p] for p in parts)
    finally:
        await consumer.stop()


async def read_model_lag_s(db: str, expected: int, timeout_s: float = 120.0) -> float | None:
    """Seconds after the load until the Events page consumer has counted every
    stored event (None if it hadn't within the timeout)."""
    from pymongo import AsyncMongoClient

    from liftstack_shared.settings import CommonSettings

    client: AsyncMongoClient = AsyncMongoClient(CommonSettings().mongo_url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout_s:
            if await client[db]["ingest_counted"].count_documents({}) >= expected:
                return round(time.perf_counter() - started, 1)
            await asyncio.sleep(0.5)
        return None
    finally:
        await client.close()


async def prepare(prefix: str) -> None:
    from liftstack_shared.kafka import ensure_topics
    from liftstack_shared.settings import CommonSettings

    await ensure_topics(CommonSettings(topic_prefix=prefix))


async def cleanup(prefix: str, db: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    from liftstack_shared.settings import CommonSettings
    from liftstack_shared.topics import ALL_TOPICS

    settings = CommonSettings(topic_prefix=prefix, mongo_db=db)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.topic(t.name) for t in ALL_TOPICS])
    finally:
        await admin.close()
    client: AsyncMongoClient = AsyncMongoClient(settings.mongo_url)
    await client.drop_database(db)
    await client.close()


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("gateway exited during start-up")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit("gateway did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, upper bound")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--with-consumer", action="store_true", help="also run the Events page consumer in the gateway process"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return

    run = secrets.token_hex(4)
    prefix, db = f"bench-{run}.", f"bench_{run}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    asyncio.run(prepare(prefix))
    argv = [sys.executable, __file__, "--serve", "--port", str(port), "--prefix", prefix, "--db", db]
    if args.with_consumer:
        argv.append("--with-consumer")
    gateway = subprocess.Popen(argv, cwd=REPO, env=os.environ.copy(), start_new_session=True)
    try:
        wait_healthy(url, gateway)
        result = asyncio.run(load(url, args.requests, args.duration, args.concurrency, args.warmup))
        if args.with_consumer:
            expected = result["statuses"].get(200, 0) + result["warmup"]
            result["read_model_caught_up_after_s"] = asyncio.run(read_model_lag_s(db, expected))
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
    from liftstack_shared.settings import CommonSettings

    stored = asyncio.run(kafka_count(CommonSettings().kafka_bootstrap, f"{prefix}engagement.events"))
    ok = result["statuses"].get(200, 0) + result["warmup"]
    result.update(
        {
            "concurrency": args.concurrency,
            "with_consumer": args.with_consumer,
            "kafka_messages": stored,
            "kafka_matches_2xx": stored == ok,
            "cpus": os.cpu_count(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        }
    )
    asyncio.run(cleanup(prefix, db))
    print(json.dumps(result, indent=2))
    if stored != ok:
        sys.exit(f"Kafka holds {stored} events but {ok} requests were answered 200")


if __name__ == "__main__":
    main()
