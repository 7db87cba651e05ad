"""Writeback throughput: assignments through real Kafka into the Iterable sandbox.

Run by hand, with the local infrastructure up:

    eval "$(deploy/local/infra env)"
    .venv/bin/python bench/writeback_throughput.py                    # both scenarios
    .venv/bin/python bench/writeback_throughput.py --scenario limited --profiles 500000

Three processes, as in production: the Iterable sandbox (`python -m
liftstack_sandbox`), one writeback instance (this file with `--worker`), and this
process, which creates the sandbox project, publishes the job's assignment batches
to Kafka and watches the run's figures in MongoDB.

Scenarios:
- limited:   the sandbox enforces Iterable's published 5 bulkUpdate req/s per project
             (leaky bucket, 429 beyond). Ceiling: 5 x 1,000 = 5,000 profiles/s; the
             target is >= 90% (writeback paces at 90% = 4,500/s), zero failed users,
             no 429 storm.
- unlimited: the sandbox's limit off and writeback's own bulkUpdate rate raised to
             1,000 req/s: the pipeline's own maximum on this machine.

Each scenario uses fresh topics (own prefix) and a fresh database, dropped after.

Besides the rates, each result has `worker_cpu_s_per_100k` and
`sandbox_cpu_s_per_100k`: the CPU time (user + system, from /proc) the writeback
worker and the sandbox spent from the first publish to the last outcome, per 100,000
profiles. On a shared machine the rates move with the load; the CPU cost barely
does, so compare code by it (100,000 / worker_cpu_s_per_100k is what one worker
process could write per second with a core to itself). `--py-spy FILE` records the
worker's stacks meanwhile (`$PY_SPY` names the binary; the profiler's own cost
inflates that run's CPU figure).
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
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
CEILING = 5 * 1000  # Iterable: 5 bulkUpdate req/s x 1,000 users


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): what a run costs,
    whatever else the machine is doing, unlike wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the writeback instance (its own process) ---------------------------------------


async def worker() -> None:
    from liftstack_shared.credentials import StaticCredentials
    from liftstack_shared.logging import setup_logging
    from liftstack_writeback.app import WritebackInstance
    from liftstack_writeback.settings import WritebackSettings

    settings = WritebackSettings()
    setup_logging(settings.log_level)
    credentials = StaticCredentials()
    credentials.add(workspace_id="bench-ws", connection_id="bench-conn", api_key=os.environ["BENCH_API_KEY"])
    instance = WritebackInstance.build(settings, credentials)
    await instance.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await instance.stop()


# --- the driver -----------------------------------------------------------------------


async def run_scenario(
    name: str, profiles: int, batch_size: int, window: int, py_spy: str | None = None
) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from liftstack_shared.kafka import ensure_topics
    from liftstack_shared.messages import Assignment, AssignmentBatch
    from liftstack_shared.mongo import make_mongo_client
    from liftstack_shared.settings import CommonSettings
    from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER
    from liftstack_writeback.store import JobStore

    limited = name == "limited"
    run_id = secrets.token_hex(3)
    common = CommonSettings(topic_prefix=f"bench-{run_id}.", mongo_db=f"bench_{run_id}")
    await ensure_topics(common, (CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER))

    sandbox_port = free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "liftstack_sandbox"],
        cwd=REPO,
        env={**os.environ, "LIFTSTACK_SANDBOX_PORT": str(sandbox_port), "LIFTSTACK_SANDBOX_LOG_LEVEL": "WARNING"},
    )
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    procs = [sandbox]
    mongo = make_mongo_client(common)
    try:
        async with httpx.AsyncClient(base_url=sandbox_url, timeout=60) as admin:
            for _ in range(100):
                try:
                    if (await admin.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            created = (
                await admin.post(
                    "/_sandbox/projects",
                    json={
                        "name": f"bench-{name}",
                        "keys": [{}],
                        "config": {"rate_limits": limited, "retry_after": False},
                    },
                )
            ).json()
            pid, api_key = created["id"], created["keys"][0]["key"]

            worker_env = {
                **os.environ,
                "LIFTSTACK_TOPIC_PREFIX": common.topic_prefix,
                "LIFTSTACK_MONGO_DB": common.mongo_db,
                "LIFTSTACK_ITERABLE_BASE_URL": sandbox_url,
                "LIFTSTACK_WRITEBACK_WINDOW": str(window),
                "LIFTSTACK_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG", "WARNING"),
                "BENCH_API_KEY": api_key,
            }
            if not limited:
                worker_env["LIFTSTACK_WRITEBACK_BULK_UPDATE_RATE"] = "1000"
            wb = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                cwd=REPO,
                env=worker_env,
                stdout=subprocess.PIPE,
            )
            procs.append(wb)
            line = await asyncio.wait_for(asyncio.to_thread(wb.stdout.readline), 60)  # type: ignore[union-attr]  # stdout=PIPE, so never None
            assert line.strip() == b"ready", line
            spy = None
            if py_spy:
                spy = subprocess.Popen(
                    [os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(wb.pid), "--rate", "200"]
                    + ["--format", "raw", "--output", py_spy, "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                )
            cpu0 = {"worker": cpu_seconds(wb.pid), "sandbox": cpu_seconds(sandbox.pid)}

            # The job: `profiles` assignments in batches, published as the engine would.
            job_id = f"bench-{name}-{run_id}"
            count = (profiles + batch_size - 1) // batch_size
            producer = AIOKafkaProducer(
                bootstrap_servers=common.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                max_request_size=8 * 1024 * 1024,
            )
            await producer.start()
            topic = common.topic(CAMPAIGN_ASSIGNMENTS.name)
            t0 = time.monotonic()
            futures = []
            for seq in range(count):
                start = seq * batch_size
                batch = AssignmentBatch(
                    job_id=job_id,
                    workspace_id="bench-ws",
                    connection_id="bench-conn",
                    campaign_key="spring-sale",
                    batch_seq=seq,
                    batch_count=count,
                    total_recipients=profiles,
                    assignments=[
                        Assignment(email=f"user{i}@example.com", variant="ABC"[i % 3])
                        for i in range(start, min(start + batch_size, profiles))
                    ],
                )
                futures.append(await producer.send(topic, batch.to_bytes(), key=b"bench-conn"))
            await asyncio.gather(*futures)
            published_s = time.monotonic() - t0
            await producer.stop()

            store = JobStore(mongo[common.mongo_db])
            summary = None
            last_print = 0.0
            samples: list[tuple[float, int]] = []  # (seconds since t0, written)
            while True:
                summary = await store.summarize_run(job_id, 1)
                now = time.monotonic()
                if summary is not None:
                    samples.append((now - t0, summary.written))
                if summary is not None and summary.finished:
                    break
                if summary is not None and now - last_print >= 10:
                    last_print = now
                    print(
                        f"  [{name}] {now - t0:5.1f}s  {summary.written:>7}/{profiles}"
                        f"  {summary.profiles_per_second:,.0f}/s",
                        flush=True,
                    )
                await asyncio.sleep(0.5)
            end_to_end = time.monotonic() - t0
            cpu = {who: cpu_seconds(proc.pid) - cpu0[who] for who, proc in (("worker", wb), ("sandbox", sandbox))}
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(60)
            # Best 10-second stretch: the steady rate once publishing no longer competes.
            peak = max(
                ((w2 - w1) / (t2 - t1) for t1, w1 in samples for t2, w2 in samples if t2 - t1 >= 10),
                default=0.0,
            )
            assert summary.started_at and summary.finished_at
            run_s = (summary.finished_at - summary.started_at).total_seconds()
            stats = (await admin.get(f"/_sandbox/projects/{pid}/stats")).json()["requests"]
            bulk = stats.get("users/bulkUpdate", {})
            sample = (
                await admin.get(f"/_sandbox/projects/{pid}/users", params={"email": f"user{profiles - 1}@example.com"})
            ).json()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await mongo.drop_database(common.mongo_db)
        await mongo.close()

    return {
        "scenario": name,
        "profiles": profiles,
        "batches": count,
        "publish_s": round(published_s, 1),
        "end_to_end_s": round(end_to_end, 1),
        "run_s": round(run_s, 1),
        "profiles_per_s_end_to_end": round(profiles / end_to_end),
        "profiles_per_s_run": round(profiles / run_s),
        "pct_of_ceiling_end_to_end": round(100 * profiles / end_to_end / CEILING, 1),
        "peak_10s_profiles_per_s": round(peak),
        # CPU seconds per 100,000 profiles, publish to last outcome: the cost of the
        # pipeline's parts independent of how busy the machine is.
        "worker_cpu_s_per_100k": round(cpu["worker"] * 100_000 / profiles, 2),
        "sandbox_cpu_s_per_100k": round(cpu["sandbox"] * 100_000 / profiles, 2),
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "failed_by_reason": summary.failed_by_reason,
        "status": str(summary.status),
        "bulkUpdate_responses": bulk,
        "sample_profile_lf_assignments": sample.get("dataFields", {}).get("lf_assignments"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=["limited", "unlimited", "both"], default="both")
    parser.add_argument("--profiles", type=int, default=500_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="profile the writeback worker with py-spy (raw/collapsed stacks into FILE; $PY_SPY names the binary)",
    )
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker())
        return
    scenarios = ["limited", "unlimited"] if args.scenario == "both" else [args.scenario]
    for name in scenarios:
        print(f"== {name}: {args.profiles:,} profiles in batches of {args.batch_size:,}", flush=True)
        result = asyncio.run(run_scenario(name, args.profiles, args.batch_size, args.window, args.py_spy))
        print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
