"""Benchmark: Kafka node loss under load, for longer runs than the chaos test.

    eval "$(deploy/local/infra env)"     # MongoDB for the read model and writeback
    .venv/bin/python bench/chaos_brokers.py [--webhooks 2000] [--profiles 50000]
        [--rate 150] [--kill-after 4] [--down 5] [--rounds 1]

Each round starts a three-node KRaft cluster of its own (deploy/local/stack.py with
LIFTSTACK_KAFKA_BROKERS=3, in a temporary runtime directory, on free ports), a real
ingest gateway, a writeback instance and the Iterable sandbox in this process, then
runs tests/chaos/scenario.py: a webhook burst and a writeback job, the node leading
the most partitions of the busy topics killed (SIGKILL) after --kill-after seconds
and restarted --down seconds later. It prints the figures (ingest error window,
recovery, what Kafka stored, writeback counts, 429s) and a per-second timeline of the
gateway's answers, and exits non-zero if anything acknowledged was lost or miscounted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from liftstack_sandbox.app import create_app as create_sandbox_app
from liftstack_sandbox.state import SandboxState
from liftstack_shared.settings import CommonSettings
from tests.chaos.cluster import KafkaCluster
from tests.chaos.scenario import ChaosReport, broker_loss
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.sandbox import SandboxHandle


def ok(report: ChaosReport) -> bool:
    return (
        report.acked == report.webhooks
        and not report.lost
        and report.read_model_published == report.stored_distinct == report.webhooks
        and (report.written, report.succeeded, report.failed) == (report.profiles, report.profiles, 0)
    )


async def round_(args: argparse.Namespace, sandbox: SandboxHandle) -> ChaosReport:
    cluster = KafkaCluster(runtime=args.runtime)
    try:
        await cluster.start()
        base = CommonSettings(mongo_db=f"bench_chaos_{secrets.token_hex(4)}")
        return await broker_loss(
            cluster,
            base,
            sandbox,
            webhooks=args.webhooks,
            profiles=args.profiles,
            rate=args.rate,
            kill_after_s=args.kill_after,
            down_s=args.down,
        )
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--profiles", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=150.0, help="webhooks per second")
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds into the load")
    parser.add_argument("--down", type=float, default=15.0, help="seconds the node stays dead")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--runtime", type=Path, default=None, help="the cluster's runtime directory, kept (logs); default: temporary"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    # aiokafka reports every refused connection to the dead node; that is the experiment.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    state = SandboxState()
    app = create_sandbox_app(state)
    failures = 0
    with serve_asgi(app) as url:
        sandbox = SandboxHandle(base_url=url, state=state, app=app)
        for n in range(1, args.rounds + 1):
            state.reset()
            report = asyncio.run(round_(args, sandbox))
            print(f"round {n}:", *report.lines(), "timeline (answers per second, relative to the kill):", sep="\n  ")
            print("\n".join(f"    {line}" for line in report.timeline()))
            failures += not ok(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
