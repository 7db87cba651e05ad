"""A Kafka broker of the test's own, to stop and restart without touching the shared
one. It reuses the local runner (deploy/local/stack.py) with its own ports and its
own runtime directory, so the shared broker's pid file and data are never involved."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from tests.fixtures.asgi import free_port

REPO = Path(__file__).resolve().parents[2]


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
    """A fresh copy of the runner module whose constants point at our ports/dirs."""
    overrides = {
        "LIFTSTACK_RUNTIME": str(runtime),
        "LIFTSTACK_KAFKA_PORT": str(port),
        "LIFTSTACK_KAFKA_CONTROLLER_PORT": str(controller_port),
        # One broker, whatever the run uses (LIFTSTACK_KAFKA_BROKERS=3 is a cluster).
        "LIFTSTACK_KAFKA_BROKERS": "1",
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        name = f"liftstack_private_stack_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, REPO / "deploy" / "local" / "stack.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def private_kafka() -> Iterator[PrivateKafka]:
    kafka = PrivateKafka()
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()
        shutil.rmtree(kafka.runtime, ignore_errors=True)
