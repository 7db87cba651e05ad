"""The gateway's producer partitions exactly as Kafka's default partitioner does, so
a recipient's events land where any Kafka client would put them."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from liftstack_ingest.publisher import partition_for


def test_partitions_match_kafkas_murmur2_partitioner():
    rng = random.Random(7)
    default = DefaultPartitioner()
    for size in (1, 3, 6, 12):
        partitions = list(range(size))
        for _ in range(500):
            key = rng.randbytes(rng.randint(1, 60))
            assert partition_for(key, partitions, partitions) == default(key, partitions, partitions)
            assert partition_for(key, partitions, partitions) == partition_for(key, partitions, [])  # memoised
