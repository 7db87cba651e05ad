"""Long webhook fuzz: >= 50,000 generated bodies (Iterable-shaped and hostile, the
strategies of tests/fuzz/webhook_payloads.py) against a real gateway, with both
consumers of `engagement.events` running (the gateway's Events page consumer and
the experiments service's results consumer).

    eval "$(deploy/local/infra env)"
    .venv/bin/python bench/fuzz_webhooks.py [--cases 50000] [--seed 1] [--concurrency 32]
        [--time-limit-s 1800]

It uses its own topic prefix and databases (dropped at the end unless --keep), and
prints one JSON report: cases, status histogram, 5xx other than 503, responses
breaking the gateway's OpenAPI document, events published, events each consumer
stored or dead-lettered, and the consumers' lag once done. Exit status 1 if any
pass criterion fails (see tests/fuzz/webhook_run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import secrets
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


async def main(args: argparse.Namespace) -> int:

    from liftstack_experiments.app import create_app as create_experiments
    from liftstack_experiments.settings import ExperimentsSettings
    from liftstack_ingest.app import create_app as create_gateway
    from liftstack_ingest.consumers import CONSUMER_NAME
    from liftstack_ingest.lookup import InMemoryConnections
    from liftstack_ingest.settings import IngestSettings
    from liftstack_shared.kafka import ensure_topics
    from liftstack_shared.mongo import make_mongo_client
    from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS
    from tests.fixtures.asgi import serve_asgi
    from tests.fuzz.webhook_run import (
        consumer_lag,
        dead_lettered_event_ids,
        fuzz_connection,
        generate_bodies,
        missing_from,
        post_bodies,
        wait_until_processed,
    )

    run = secrets.token_hex(4)
    gateway_settings = IngestSettings(
        topic_prefix=f"fuzzbench-{run}.",
        mongo_db=f"fuzzbench_{run}",
        events_prune_interval_s=3600,
    )
    common = gateway_settings.model_dump(exclude={"port"})
    experiments_settings = ExperimentsSettings(**common)
    await ensure_topics(gateway_settings)
    token, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    connection = fuzz_connection("conn_fuzzbench", "ws_fuzzbench", "Fuzz bench", secret)

    started = time.monotonic()
    cache = Path(args.cache_dir) / f"liftstack-fuzz-bodies-{args.seed}-{args.cases}.pickle"
    if cache.exists():  # generating 50,000 bodies takes minutes; reruns reuse them
        bodies = pickle.loads(cache.read_bytes())
    else:
        bodies = generate_bodies(args.cases, args.seed)
        cache.write_bytes(pickle.dumps(bodies))
    generated_s = time.monotonic() - started
    print(f"generated {len(bodies)} bodies in {generated_s:.0f}s", file=sys.stderr)

    mongo = make_mongo_client(gateway_settings)
    report: dict[str, object] = {"seed": args.seed, "generation_s": round(generated_s, 1)}
    ok = True
    try:
        with (
            serve_asgi(create_gateway(gateway_settings, InMemoryConnections({token: connection}))) as gateway,
            serve_asgi(create_experiments(experiments_settings)),
        ):
            fuzz = await asyncio.wait_for(
                post_bodies(
                    gateway,
                    f"/webhooks/iterable/{token}",
                    {"Authorization": f"Bearer {secret}"},
                    bodies,
                    args.concurrency,
                ),
                args.time_limit_s,
            )
            report.update(fuzz.summary())
            report["examples_server_errors"] = fuzz.server_errors[:5]
            report["examples_schema_violations"] = fuzz.schema_violations[:5]
            report["examples_transport_errors"] = fuzz.transport_errors[:5]
            ok &= not fuzz.server_errors and not fuzz.schema_violations and not fuzz.transport_errors
            ok &= fuzz.cases == len(bodies)

            consumers = {
                gateway_settings.topic(CONSUMER_NAME): (
                    mongo[gateway_settings.mongo_db],
                    "ingest_events",
                    [gateway_settings.topic(ENGAGEMENT_EVENTS.name), gateway_settings.topic(INGEST_OBSERVATIONS.name)],
                ),
                experiments_settings.topic(experiments_settings.results_group): (
                    mongo[experiments_settings.experiments_db],
                    "result_events",
                    [gateway_settings.topic(ENGAGEMENT_EVENTS.name)],
                ),
            }
            letters: dict[str, set[str]] = {}

            async def unprocessed() -> dict[str, set[str]]:
                letters.clear()
                letters.update(
                    await dead_lettered_event_ids(
                        gateway_settings.kafka_bootstrap, gateway_settings.topic(ENGAGEMENT_DEADLETTER.name)
                    )
                )
                gaps = {}
                for group, (db, collection, _) in consumers.items():
                    missing = await missing_from(db, collection, fuzz.published) - letters.get(group, set())
                    if missing:
                        gaps[group] = missing
                return gaps

            gaps = await wait_until_processed(unprocessed, timeout_s=args.settle_s, interval_s=2.0)
            lags = {}
            for group, (_, _, topics) in consumers.items():
                lags[group] = await consumer_lag(gateway_settings.kafka_bootstrap, group, topics)
            report["consumers"] = {
                group: {
                    "stored_or_dead_lettered": len(fuzz.published) - len(gaps.get(group, set())),
                    "dead_lettered": len(letters.get(group, set()) & fuzz.published),
                    "unprocessed": len(gaps.get(group, set())),
                    "lag": lags[group],
                }
                for group in consumers
            }
            ok &= not gaps and not any(lags.values())
    finally:
        if not args.keep:
            for name in (gateway_settings.mongo_db, experiments_settings.experiments_db):
                await mongo.drop_database(name)
        await mongo.close()
    report["pass"] = ok
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--time-limit-s", type=float, default=1800.0, help="bound on the posting phase")
    parser.add_argument("--settle-s", type=float, default=300.0, help="how long consumers get to catch up")
    parser.add_argument("--keep", action="store_true", help="keep the run's databases")
    parser.add_argument(
        "--cache-dir",
        default=tempfile.gettempdir(),
        help="where generated bodies are kept between runs (same seed and count)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
