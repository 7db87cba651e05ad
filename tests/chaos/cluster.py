"""A three-node KRaft cluster of the test's own (deploy/local/stack.py with
LIFTSTACK_KAFKA_BROKERS=3) in its own runtime directory and ports, so a node can be
killed with SIGKILL and restarted without touching any shared broker."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from liftstack_shared.kafka import kafka_ready
from liftstack_shared.retry import backoff
from tests.fixtures.local_stack import load_stack

NODES = 3
T = TypeVar("T")


def _free_port_block(size: int) -> int:
    """A base port with `size` consecutive free ports (node n: base + 2(n-1), +1)."""
    for _ in range(200):
        # Below the ephemeral range (32768+), where client sockets would take them.
        base = random.randrange(21000, 28000, 2)
        try:
            sockets = []
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports for the Kafka cluster")


class KafkaCluster:
    def __init__(self, runtime: Path | None = None, base_port: int | None = None) -> None:
        self.runtime = runtime or Path(tempfile.mkdtemp(prefix="liftstack-kafka-cluster-"))
        self._owns_runtime = runtime is None
        base = base_port or _free_port_block(2 * NODES)
        self._stack = _load_stack(self.runtime, base, base + 1)
        self.nodes = {node.node_id: node for node in self._stack.kafka_nodes()}

    @property
    def bootstrap(self) -> str:
        return str(self._stack.kafka_bootstrap())

    async def start(self, timeout_s: float = 180.0) -> None:
        self._stack.start_kafka()
        await kafka_ready(self.bootstrap, timeout_s)
        await self.wait_for_brokers(NODES, timeout_s)

    def kill(self, node_id: int) -> None:
        """SIGKILL the node's JVM: no controlled shutdown, no leadership hand-over."""
        name = self.nodes[node_id].name
        pid = self._stack.running_pid(name)
        assert pid is not None, f"{name} is not running"
        os.killpg(pid, signal.SIGKILL)
        try:
            # Our child (spawned by this process): reap it, or it lingers as a zombie
            # that still "runs" for the pid check, and the restart would be skipped.
            os.waitpid(pid, 0)
        except ChildProcessError:
            deadline = time.monotonic() + 10
            while self._stack.running_pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        assert self._stack.running_pid(name) is None, f"{name} survived SIGKILL"

    def restart(self, node_id: int) -> None:
        self._stack.start_kafka_node(self.nodes[node_id])

    def stop(self) -> None:
        for node in self.nodes.values():
            self._stack.stop(node.name, timeout_s=0.5)  # killed: the data is thrown away
        if self._owns_runtime:
            shutil.rmtree(self.runtime, ignore_errors=True)

    async def _metadata(self, call: Callable[[AIOKafkaAdminClient], Awaitable[T]]) -> T:
        """One admin call, retried while the cluster fails over (a node away, a
        metadata request to the dead node)."""
        async for attempt in backoff(attempts=20, first_s=0.2, max_s=2.0, retry_on=(KafkaError, OSError)):
            with attempt:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                await admin.start()
                try:
                    return await call(admin)
                finally:
                    await admin.close()
        raise AssertionError("unreachable: backoff re-raises the last failure")

    async def wait_for_brokers(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            cluster = await self._metadata(lambda admin: admin.describe_cluster())
            if len(cluster["brokers"]) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(cluster['brokers'])} of {count} Kafka nodes joined in {timeout_s}s")
            await asyncio.sleep(0.5)

    async def partitions(self, topics: list[str]) -> list[dict[str, Any]]:
        described = await self._metadata(lambda admin: admin.describe_topics(topics))
        return [{"topic": t["topic"], **p} for t in described for p in t["partitions"]]

    async def leaders(self, topics: list[str]) -> Counter[int]:
        """How many partitions of `topics` each node leads."""
        return Counter(p["leader"] for p in await self.partitions(topics))

    async def wait_leaderless(self, node_id: int, topics: list[str], timeout_s: float) -> float:
        """Seconds until `node_id` leads no partition of `topics` (the controller has
        noticed it is gone: broker.session.timeout.ms, 9 s by default)."""
        started = time.monotonic()
        while (await self.leaders(topics)).get(node_id, 0) > 0:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"node {node_id} still leads partitions of {topics} after {timeout_s}s")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def wait_fully_replicated(self, topics: list[str], timeout_s: float) -> float:
        """Seconds until every partition of `topics` has all replicas in sync again."""
        started = time.monotonic()
        while True:
            parts = await self.partitions(topics)
            if parts and all(len(p["isr"]) == len(p["replicas"]) for p in parts):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"partitions of {topics} not back in sync in {timeout_s}s")
            await asyncio.sleep(0.25)


def _load_stack(runtime: Path, port: int, controller_port: int) -> ModuleType:
    return load_stack(
        {
            "LIFTSTACK_RUNTIME": str(runtime),
            "LIFTSTACK_KAFKA_PORT": str(port),
            "LIFTSTACK_KAFKA_CONTROLLER_PORT": str(controller_port),
            "LIFTSTACK_KAFKA_BROKERS": str(NODES),
        }
    )
