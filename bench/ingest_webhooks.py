"""Benchmark: the ingest gateway against a bare endpoint on the same server stack,
side by side in one run, with a native load generator (wrk).

    eval "$(deploy/local/stack.py infra env)"        # or any Kafka + MongoDB
    .venv/bin/python bench/ingest_webhooks.py [--duration 15] [--connections 32]
        [--threads 1] [--rounds 2] [--workers 1] [--with-consumer]

Each round runs wrk against the bare endpoint, then against the gateway, with the
same connections, duration and Iterable-shaped `emailOpen` bodies (every body unique:
the gateway dedupes by content). The bare endpoint reads and parses the JSON and
answers 200; the gateway verifies the secret, normalises, publishes with acks=all
on the idempotent producer and answers 200 only after Kafka's ack. Both are served
by uvicorn with the same loop and HTTP implementation (`auto`: uvloop and httptools
when installed), in their own process (`--workers N` processes sharing the socket).

Printed per run: requests/s, p50/p99 latency (wrk's), the server's and wrk's CPU
use (cores), the server's CPU per request, and the ratio gateway/bare (of requests/s,
and of CPU per request, which holds steadier on a shared machine). wrk must not be the bottleneck: its CPU is
printed, and a run where wrk used more than 0.9 of a core per thread is flagged. At
the end Kafka must hold exactly one message per 200 the gateway answered (warm-up
included), or the script exits non-zero. wrk: `apt-get install wrk` (Debian).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-webhook-token"
SECRET = "bench-webhook-secret-value"
PATH = f"/webhooks/iterable/{TOKEN}"

# wrk's Lua: unique bodies per thread and request, statuses counted per thread and
# summed in done(); the summary is one JSON line on stdout.
WRK_SCRIPT = r"""
local threads = {}
local counter = 0
statuses = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  run = args[1]
  statuses = {}
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email":"user%d@bench.example.com","eventName":"emailOpen","dataFields":' ..
    '{"campaignId":59667,"templateId":93849,"messageId":"%s-%d-%d",' ..
    '"createdAt":"2024-05-01 10:00:00 +00:00","emailId":"c59667:t93849:%d"}}',
    counter % 5000, run, tid, counter, counter)
  return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      total[tostring(status)] = (total[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, string.format('"%s":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ",")))
end
"""


# ------------------------------------------------------------------ server processes


def gateway_app():  # uvicorn factory (one per worker process)
    from pydantic import SecretStr

    from liftstack_ingest.app import create_app
    from liftstack_ingest.lookup import InMemoryConnections
    from liftstack_ingest.settings import IngestSettings
    from liftstack_shared.connections_client import InternalConnection, Region
    from liftstack_shared.logging import setup_logging
    from liftstack_shared.messages import EventType

    setup_logging("WARNING")
    settings = IngestSettings(
        topic_prefix=os.environ["BENCH_PREFIX"],
        mongo_db=os.environ["BENCH_DB"],
        events_consumer_enabled=os.environ.get("BENCH_WITH_CONSUMER") == "1",
    )
    connection = InternalConnection(
        connection_id="conn_bench",
        workspace_id="ws_bench",
        name="Bench",
        region=Region.US,
        api_key=SecretStr("0" * 32),
        webhook_secrets=[SecretStr(SECRET)],
        event_types=[t.value for t in EventType],
        status="connected",
    )
    return create_app(settings, InMemoryConnections({TOKEN: connection}))


def bare_app():  # uvicorn factory: the same server stack doing only the HTTP part
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        body = json.loads(await request.body())
        return JSONResponse({"status": "published", "event_name": body.get("eventName")})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(PATH, webhook, methods=["POST"]), Route("/healthz", healthz)])


def serve(kind: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        f"ingest_webhooks:{kind}_app",
        factory=True,
        app_dir=str(Path(__file__).parent),
        host="127.0.0.1",
        port=port,
        workers=workers,
        loop="auto",
        http="auto",
        log_config=None,
        access_log=False,
    )


class Server:
    """One server (bare or gateway) in its own process group."""

    def __init__(self, kind: str, workers: int, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, __file__, "--serve", kind, "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **env}, start_new_session=True)

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit("server exited during start-up")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        sys.exit("server did not become healthy")

    def cpu_s(self) -> float:
        """CPU seconds of the server and its worker processes (from /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, IndexError):
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, IndexError):
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------------ load


def run_wrk(server: Server, script: Path, args: argparse.Namespace, duration_s: float) -> dict:
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration_s))}s",
        "--latency",
        "-s",
        str(script),
        "-H",
        f"Authorization: OAuth2 {SECRET}",
        "-H",
        "Content-Type: application/json",
        f"{server.url}{PATH}",
        "--",
        secrets.token_hex(4),
    ]
    cpu_before = server.cpu_s()
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = server.cpu_s() - cpu_before
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    wrk_cpu = (wrk_after.ru_utime - wrk_before.ru_utime) + (wrk_after.ru_stime - wrk_before.ru_stime)
    return {
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "ok": raw["statuses"].get("200", 0),
        "statuses": raw["statuses"],
        "socket_errors": raw["socket_errors"],
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "server_cores": round(server_cpu / seconds, 2),
        # CPU per request: steadier than requests/s when other work shares the cores.
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, raw["requests"]), 3),
        "wrk_cores": round(wrk_cpu / seconds, 2),
        "wrk_saturated": wrk_cpu / seconds > 0.9 * args.threads,
    }


async def kafka_events(bootstrap: str, topic: str) -> tuple[int, int]:
    """(messages, distinct event ids) on the run's engagement.events topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from liftstack_shared.messages import EngagementEvent
    from liftstack_shared.topics import ENGAGEMENT_EVENTS

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(ENGAGEMENT_EVENTS.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        messages, ids = 0, set()
        while [p for p in parts if await consumer.position(p) < end[p]]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    messages += 1
                    ids.add(EngagementEvent.model_validate_json(record.value).event_id)
        return messages, len(ids)
    finally:
        await consumer.stop()


async def read_model_caught_up_s(db: str, expected: int, timeout_s: float = 120.0) -> float | None:
    """Seconds after the load until the Events page consumer has counted every stored event."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="bare/gateway pairs, interleaved")
    parser.add_argument("--workers", type=int, default=1, help="server processes sharing the socket")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    parser.add_argument("--with-consumer", action="store_true", help="also run the Events page consumer in the gateway")
    parser.add_argument("--serve", choices=["gateway", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    from liftstack_shared.settings import CommonSettings

    run = secrets.token_hex(4)
    prefix, db = f"bench-{run}.", f"bench_{run}"
    asyncio.run(prepare(prefix))
    env = {"BENCH_PREFIX": prefix, "BENCH_DB": db, "BENCH_WITH_CONSUMER": "1" if args.with_consumer else "0"}
    bare, gateway = Server("bare", args.workers, env), Server("gateway", args.workers, env)
    rounds: list[dict] = []
    gateway_ok = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "webhooks.lua"
            script.write_text(WRK_SCRIPT)
            bare.wait_healthy()
            gateway.wait_healthy()
            for server in (bare, gateway):  # connections, Kafka metadata, JIT-free warm caches
                result = run_wrk(server, script, args, args.warmup)
                gateway_ok += result["ok"] if server is gateway else 0
            for _ in range(args.rounds):
                pair = {"bare": run_wrk(bare, script, args, args.duration)}
                pair["gateway"] = run_wrk(gateway, script, args, args.duration)
                gateway_ok += pair["gateway"]["ok"]
                pair["ratio"] = round(pair["gateway"]["requests_per_s"] / pair["bare"]["requests_per_s"], 3)
                rounds.append(pair)
                print(json.dumps(pair), flush=True)
        bootstrap = CommonSettings().kafka_bootstrap
        stored, distinct = asyncio.run(kafka_events(bootstrap, f"{prefix}engagement.events"))
        caught_up = asyncio.run(read_model_caught_up_s(db, distinct)) if args.with_consumer else None
    finally:
        bare.stop()
        gateway.stop()
    asyncio.run(cleanup(prefix, db))
    # wrk stops with up to `connections` requests in flight per run; the gateway may
    # still publish those, but wrk never sees their 200. So Kafka may hold up to that
    # many more events than counted 200s, never fewer, and never a duplicate.
    in_flight = args.connections * (args.rounds + 1)
    exact = distinct == stored and gateway_ok <= stored <= gateway_ok + in_flight
    summary = {
        "connections": args.connections,
        "wrk_threads": args.threads,
        "workers": args.workers,
        "duration_s": args.duration,
        "with_consumer": args.with_consumer,
        "bare_requests_per_s": [r["bare"]["requests_per_s"] for r in rounds],
        "gateway_requests_per_s": [r["gateway"]["requests_per_s"] for r in rounds],
        "gateway_p99_ms": [r["gateway"]["p99_ms"] for r in rounds],
        "ratio": [r["ratio"] for r in rounds],
        "cpu_per_request_ratio_bare_over_gateway": [
            round(r["bare"]["server_cpu_ms_per_request"] / r["gateway"]["server_cpu_ms_per_request"], 3) for r in rounds
        ],
        "wrk_saturated": any(r[k]["wrk_saturated"] for r in rounds for k in ("bare", "gateway")),
        "gateway_200s": gateway_ok,
        "kafka_messages": stored,
        "kafka_distinct_events": distinct,
        "kafka_exactly_once_per_200": exact,
        "read_model_caught_up_after_s": caught_up,
        "cpus": os.cpu_count(),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary, indent=2))
    if not exact:
        sys.exit(
            f"Kafka holds {stored} events ({distinct} distinct) for {gateway_ok} counted 200s"
            f" (+ at most {in_flight} in flight when wrk stopped)"
        )


if __name__ == "__main__":
    main()
