"""The chart's topics job, run for real: its rendered command and environment against
the test Kafka create every catalogue topic with its partitions and the configured
replication. (Replication here is what the test cluster can hold: 1 on the single local
broker, 3 with LIFTSTACK_KAFKA_BROKERS=3 and LIFTSTACK_TOPIC_REPLICATION_FACTOR=3.)"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from liftstack_shared.topics import ALL_TOPICS
from tests.deploy.chart import by_name, environ_without_liftstack, render
from tests.fixtures.infra import Infra

TOPIC_CONFIG = 1  # DescribeConfigs' config_source for a topic's own setting


async def test_the_topics_job_creates_the_catalogue_with_partitions_and_replication(
    tmp_path: Path, infra: Infra
) -> None:
    replication = int(os.environ.get("LIFTSTACK_TOPIC_REPLICATION_FACTOR", "1"))
    min_insync = max(1, replication - 1)
    prefix = f"test-job-{secrets.token_hex(4)}."
    manifests = render(
        tmp_path,
        {
            "kafka": {
                "bootstrap": infra.kafka_bootstrap,
                "topicPrefix": prefix,
                "topics": {"replicationFactor": replication, "minInsyncReplicas": min_insync},
            }
        },
    )
    job = by_name(manifests, "Job")["lift-liftstack-topics"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    python, flag, script = container["command"]
    assert (python, flag) == ("/app/.venv/bin/python", "-c")
    env = {item["name"]: item["value"] for item in container["env"]}
    # The job's own command, with this machine's interpreter standing in for the image's.
    done = subprocess.run(
        [sys.executable, "-c", script], env={**environ_without_liftstack(), **env}, capture_output=True, timeout=180
    )
    assert done.returncode == 0, done.stderr.decode()

    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        names = [prefix + t.name for t in ALL_TOPICS]
        described = {d["topic"]: d for d in await admin.describe_topics(names)}
        for topic in ALL_TOPICS:
            partitions = described[prefix + topic.name]["partitions"]
            assert len(partitions) == topic.partitions, topic.name
            assert {len(p["replicas"]) for p in partitions} == {replication}, topic.name
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, names[0])])
        # (name, value, read_only, config_source, ...); source 1: set on the topic itself.
        entries = {entry[0]: (entry[1], entry[3]) for entry in configs[0].resources[0][4]}
        assert entries["min.insync.replicas"] == (str(min_insync), TOPIC_CONFIG)
        await admin.delete_topics(names)
    finally:
        await admin.close()
