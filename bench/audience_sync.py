"""Benchmark: sync N members from the Iterable sandbox into Kafka through the audiences
service, and report the time and the service's peak RSS.

    cd /work/main && eval "$(deploy/local/infra env)"
    .venv/bin/python bench/audience_sync.py                 # 100k and 500k
    .venv/bin/python bench/audience_sync.py --sizes 1000000

Three processes: the sandbox (`python -m liftstack_sandbox`), the audiences service
(this file with `serve`: the real app, given the sandbox key in memory instead of the
connections service), and this driver, which starts a sync over HTTP, waits for its
record to complete and then reads `audience.members` back from Kafka to check that
every member arrived exactly once. The time is POST .../sync -> record `completed`
(the completion message is published before the record says so). Peak RSS is the
service process's VmHWM, from a fresh process per size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
WS, CID = "ws-bench", "conn-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve() -> None:
    """The audiences service with the bench key in memory (child process)."""
    from liftstack_audiences.app import create_app
    from liftstack_audiences.settings import AudiencesSettings
    from liftstack_shared.credentials import StaticCredentials
    from liftstack_shared.http import serve as serve_app

    settings = AudiencesSettings()
    credentials = StaticCredentials()
    credentials.add(workspace_id=WS, connection_id=CID, api_key=os.environ.pop("BENCH_ITERABLE_KEY"), region="US")
    serve_app(create_app(settings, credentials), settings)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def read_back(settings, sync_id: str) -> tuple[int, int, dict]:
    """(members received, distinct members, completion message) from Kafka."""
    from aiokafka import AIOKafkaConsumer

    from liftstack_shared.topics import AUDIENCE_MEMBERS

    consumer = AIOKafkaConsumer(
        settings.topic(AUDIENCE_MEMBERS.name),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"bench-{secrets.token_hex(4)}",
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    received, seen = 0, set()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=10_000)
            if not batches:
                raise TimeoutError("no completion message on audience.members")
            for records in batches.values():
                for record in records:
                    msg = json.loads(record.value)
                    if msg["sync_id"] != sync_id:
                        continue
                    if msg["kind"] == "completed":
                        return received, len(seen), msg
                    for m in msg["members"]:
                        received += 1
                        seen.add(m["email"] or "u:" + m["user_id"])
    finally:
        await consumer.stop()


def bench_signer(issuer_port: int):
    """A throwaway token signer for the bench user, its public JWKS served over HTTP
    (services verify user tokens against a provider's published keys)."""
    import tempfile
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from liftstack_console.demo_signer import DemoSigner, generate_key_file

    key_file = Path(tempfile.mkdtemp()) / "bench-signing-key.pem"
    generate_key_file(key_file)
    issuer = f"http://127.0.0.1:{issuer_port}"
    signer = DemoSigner(key_file, issuer=issuer, audience="urn:liftstack:api")
    body = json.dumps(signer.jwks()).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", issuer_port), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return signer, f"{issuer}/jwks"


def run_size(size: int, sandbox_url: str, base_env: dict[str, str], settings, signer) -> dict:
    from liftstack_shared.auth import Role

    admin = httpx.Client(base_url=sandbox_url, timeout=120)
    project = admin.post(
        "/_sandbox/projects",
        json={
            "name": f"bench-{size}",
            "keys": [{"type": "server_side"}],
        },
    ).json()
    key = project["keys"][0]["key"]
    lst = admin.post(
        f"/_sandbox/projects/{project['id']}/lists",
        json={
            "name": f"bench {size}",
            "generate": {"count": size},
        },
    ).json()

    port = free_port()
    env = base_env | {"LIFTSTACK_PORT": str(port), "BENCH_ITERABLE_KEY": key}
    service = subprocess.Popen([sys.executable, __file__, "serve"], env=env, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", service)
        token = signer.token("bench-user", WS, Role.MEMBER, ttl_s=3600)
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        started = time.perf_counter()
        accepted = http.post(f"/v1/workspaces/{WS}/connections/{CID}/audiences/{lst['id']}/sync")
        accepted.raise_for_status()
        sync_id = accepted.json()["sync_id"]
        while True:
            record = http.get(f"/v1/workspaces/{WS}/audience-syncs/{sync_id}").json()
            if record["status"] in ("completed", "failed"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        rss = peak_rss_mb(service.pid)
    finally:
        stop(service)
    if record["status"] != "completed":
        raise RuntimeError(f"sync failed: {record['error']}")
    received, distinct, completed = asyncio.run(read_back(settings, sync_id))
    return {
        "size": size,
        "seconds": elapsed,
        "members_per_s": size / elapsed,
        "peak_rss_mb": rss,
        "published": received,
        "distinct": distinct,
        "completion_count": completed["member_count"],
        "batches": completed["batch_count"],
    }


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--sandbox-url", help="use a running sandbox instead of starting one")
    args = parser.parse_args()

    from liftstack_shared.kafka import ensure_topics
    from liftstack_shared.settings import CommonSettings

    run = secrets.token_hex(4)
    settings = CommonSettings(
        kafka_bootstrap=os.environ.get("LIFTSTACK_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        mongo_url=os.environ.get("LIFTSTACK_MONGO_URL", "mongodb://127.0.0.1:27017/"),
        mongo_db=f"bench_{run}",
        topic_prefix=f"bench-{run}.",
    )
    signer, jwks_url = bench_signer(free_port())
    asyncio.run(ensure_topics(settings))

    sandbox = None
    sandbox_url = args.sandbox_url
    if sandbox_url is None:
        port = free_port()
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "liftstack_sandbox"],
            cwd=REPO,
            env=os.environ | {"LIFTSTACK_SANDBOX_PORT": str(port), "LIFTSTACK_SANDBOX_LOG_LEVEL": "WARNING"},
        )
        sandbox_url = f"http://127.0.0.1:{port}"
        wait_http(f"{sandbox_url}/healthz", sandbox)
    base_env = os.environ | {
        "LIFTSTACK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LIFTSTACK_MONGO_URL": settings.mongo_url,
        "LIFTSTACK_MONGO_DB": settings.mongo_db,
        "LIFTSTACK_TOPIC_PREFIX": settings.topic_prefix,
        "LIFTSTACK_OIDC_ISSUER": signer.issuer,
        "LIFTSTACK_OIDC_JWKS_URL": jwks_url,
        "LIFTSTACK_ITERABLE_BASE_URL": sandbox_url,
        "LIFTSTACK_LOG_LEVEL": "WARNING",
    }
    try:
        results = [run_size(size, sandbox_url, base_env, settings, signer) for size in args.sizes]
    finally:
        if sandbox is not None:
            stop(sandbox)
        from pymongo import MongoClient

        MongoClient(settings.mongo_url).drop_database(settings.mongo_db)

    print(f"\n{'members':>10} {'seconds':>8} {'members/s':>10} {'peak RSS MB':>12}  check")
    for r in results:
        ok = r["published"] == r["distinct"] == r["completion_count"] == r["size"]
        print(
            f"{r['size']:>10,} {r['seconds']:>8.1f} {r['members_per_s']:>10,.0f}"
            f" {r['peak_rss_mb']:>12.1f}  {'exactly once' if ok else 'MISMATCH'}"
            f" ({r['published']:,} published, {r['distinct']:,} distinct,"
            f" completion says {r['completion_count']:,}, {r['batches']} batches)"
        )


if __name__ == "__main__":
    main()
