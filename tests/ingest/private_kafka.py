"""A Kafka broker of the test's own, to stop and restart without touching the shared
one. It reuses the local runner (deploy/local/stack.py) with its own ports and its
own runtime directory, so the shared broker's pid file and data are never involved."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from tests.fixtures.asgi import free_port
from tests.fixtures.local_stack import load_stack


class PrivateKafka:
    def __init__(self) -> None:
        self.runtime = Path(tempfile.mkdtemp(prefix="liftstack-private-kafka-"))
        self.port = free_port()
        self._stack = _load_stack(self.runtime, self.port, free_port())

    @property
    def bootstrap(self) -> str:
        return self._stack.kafka_bootstrap()

    def start(self) -> None:
        self._stack.start_kafka()

    def stop(self) -> None:
        """Kill it (a single-node KRaft broker's controlled shutdown can take
        minutes with clients attached; a crash is the case that matters anyway)."""
        self._stack.stop("kafka", timeout_s=0.5)


def _load_stack(runtime: Path, port: int, controller_port: int) -> ModuleType:
    return load_stack(
        {
            "LIFTSTACK_RUNTIME": str(runtime),
            "LIFTSTACK_KAFKA_PORT": str(port),
            "LIFTSTACK_KAFKA_CONTROLLER_PORT": str(controller_port),
            # One broker, whatever the run uses (LIFTSTACK_KAFKA_BROKERS=3 is a cluster).
            "LIFTSTACK_KAFKA_BROKERS": "1",
        }
    )


@contextmanager
def private_kafka() -> Iterator[PrivateKafka]:
    kafka = PrivateKafka()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()
        shutil.rmtree(kafka.runtime, ignore_errors=True)
