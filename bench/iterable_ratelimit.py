"""Benchmark: sustained users/bulkUpdate throughput through the Iterable client against
the sandbox with Iterable's published limit on (5 requests/s per project).

    cd /work/main && .venv/bin/python bench/iterable_ratelimit.py
    .venv/bin/python bench/iterable_ratelimit.py --seconds 30 --concurrency 8
    .venv/bin/python bench/iterable_ratelimit.py --headroom 1.0
    .venv/bin/python bench/iterable_ratelimit.py --no-limiter --retry-after   # 429 handling only

Two processes: the sandbox (`python -m liftstack_sandbox`, its own event loop and
GIL, as in production the client never shares a process with Iterable) and this
driver, which runs `--concurrency` workers, each sending 1,000-user bulkUpdates
(writing one campaign's key into `lf_assignments` with mergeNestedObjects, as the
writeback does) through one IterableClient for `--seconds`. It prints requests/s and
profiles/s sustained, the 429s the sandbox answered (its own per-project stats) and
the retries/waits the client recorded (its Prometheus metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client import REGISTRY

from liftstack_shared.iterable import (
    BulkUpdateUser,
    IterableClient,
    NoRateLimits,
    RateLimiterRegistry,
    RateLimits,
    Region,
)
from liftstack_shared.logging import setup_logging

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = "users/bulkUpdate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sandbox(port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "LIFTSTACK_SANDBOX_PORT": str(port),
        "LIFTSTACK_SANDBOX_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "liftstack_sandbox"], cwd=REPO, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("sandbox did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def client_counters() -> dict[str, float]:
    return {
        "retries_429": metric("liftstack_iterable_retries_total", endpoint=ENDPOINT, reason="rate_limited"),
        "retries_other": sum(
            metric("liftstack_iterable_retries_total", endpoint=ENDPOINT, reason=r)
            for r in ("server_error", "timeout", "connection_error")
        ),
        "limiter_wait_s": metric("liftstack_iterable_rate_limit_wait_seconds_sum", endpoint=ENDPOINT, source="limiter"),
        "after_429_wait_s": sum(
            metric("liftstack_iterable_rate_limit_wait_seconds_sum", endpoint=ENDPOINT, source=s)
            for s in ("retry_after", "backoff")
        ),
    }


def batch(start: int, size: int) -> list[BulkUpdateUser]:
    return [
        BulkUpdateUser(
            email=f"bench{i}@example.com",
            dataFields={"lf_assignments": {"cmp-bench": "AB"[i % 2]}},
            mergeNestedObjects=True,
        )
        for i in range(start, start + size)
    ]


async def drive(
    client: IterableClient, seconds: float, concurrency: int, users_per_request: int
) -> tuple[list[tuple[float, float]], int, float]:
    """Workers send bulkUpdates until the deadline. Returns (start, end) offsets of
    each request, the users written, and the wall time until the last one finished."""
    started = time.monotonic()
    deadline = started + seconds
    spans: list[tuple[float, float]] = []
    written = 0
    next_user = 0

    async def worker() -> None:
        nonlocal written, next_user
        while time.monotonic() < deadline:
            users = batch(next_user, users_per_request)
            next_user += users_per_request
            t0 = time.monotonic() - started
            result = await client.bulk_update(users)
            spans.append((t0, time.monotonic() - started))
            written += result.successCount

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return spans, written, time.monotonic() - started


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    sandbox = start_sandbox(port)
    base = f"http://127.0.0.1:{port}"
    try:
        admin = httpx.Client(base_url=base, timeout=30)
        project = admin.post(
            "/_sandbox/projects",
            json={
                "name": "bench-ratelimit",
                "region": "US",
                "config": {"rate_limits": True, "retry_after": args.retry_after},
                "keys": [{"type": "server_side"}],
            },
        ).json()
        key = project["keys"][0]["key"]

        limits: RateLimits = NoRateLimits() if args.no_limiter else RateLimiterRegistry(headroom=args.headroom)
        before = client_counters()
        async with IterableClient(key, Region.US, sandbox_base_url=base, rate_limits=limits) as client:
            spans, written, wall = await drive(client, args.seconds, args.concurrency, args.users_per_request)
        after = client_counters()
        stats = admin.get(f"/_sandbox/projects/{project['id']}/stats").json()["requests"]
        server = stats.get(ENDPOINT, {})
    finally:
        stop(sandbox)

    done = len(spans)
    finished = sorted(end for _, end in spans)
    # Steady state: requests completed after the first 2 s, over the time since.
    steady = [t for t in finished if t >= 2.0]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    latencies = sorted(end - start for start, end in spans)
    limit = 5.0
    print()
    print(f"sandbox limit        : {limit:g} bulkUpdate req/s per project (published), burst 5")
    limiter = (
        "no client-side limiter"
        if args.no_limiter
        else f"RateLimiterRegistry headroom {args.headroom:g} -> {limit * args.headroom:g} req/s"
    )
    print(
        f"client               : {limiter}"
        f", {args.concurrency} workers, {args.users_per_request} users/request,"
        f" Retry-After {'on' if args.retry_after else 'off'}"
    )
    print(f"duration             : {wall:.1f} s wall, {done} requests completed")
    print(f"requests/s sustained : {done / wall:.2f} overall, {steady_rate:.2f} after the first 2 s")
    print(f"profiles/s sustained : {written / wall:,.0f} ({written:,} written)")
    print(f"sandbox answered     : {', '.join(f'{s}: {n}' for s, n in sorted(server.items()))}")
    print(
        f"429s seen            : {server.get('429', 0)} (client retries on 429: "
        f"{after['retries_429'] - before['retries_429']:.0f}, other retries: "
        f"{after['retries_other'] - before['retries_other']:.0f})"
    )
    print(
        f"client waits         : limiter {after['limiter_wait_s'] - before['limiter_wait_s']:.1f} s,"
        f" after 429s {after['after_429_wait_s'] - before['after_429_wait_s']:.1f} s (summed over workers)"
    )
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
        print(
            f"call latency         : p50 {statistics.median(latencies) * 1000:.0f} ms,"
            f" p95 {p95 * 1000:.0f} ms (incl. limiter waits and retries)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--users-per-request", type=int, default=1000)
    parser.add_argument("--headroom", type=float, default=0.9)
    parser.add_argument(
        "--no-limiter", action="store_true", help="no client-side limiter: only 429 handling keeps the pace"
    )
    parser.add_argument(
        "--retry-after",
        action="store_true",
        help="the sandbox sends Retry-After on 429 (off: Iterable's UNCONFIRMED case)",
    )
    parser.add_argument("--log-level", default="ERROR")
    args = parser.parse_args()
    setup_logging(args.log_level)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
