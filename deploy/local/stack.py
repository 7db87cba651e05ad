"""Run liftstack on this machine without Docker: Kafka (KRaft) and FerretDB as local
processes, then every service.

    deploy/local/infra up|down|status|env     infrastructure only
    ./liftstack up|down|status                infrastructure + services

Kafka is one broker, or with LIFTSTACK_KAFKA_BROKERS=3 a three-node KRaft cluster
(each node broker and controller; replication factor 3, min.insync.replicas 2): node n
listens on LIFTSTACK_KAFKA_PORT + 2(n-1), its controller on
LIFTSTACK_KAFKA_CONTROLLER_PORT + 2(n-1).

Provisioning is cached in $LIFTSTACK_CACHE (default ~/.cache/liftstack): the Kafka
broker classpath comes from Maven Central via deploy/local/kafka/pom.xml, and the
FerretDB binary is built from deploy/local/ferretdb (a Go main embedding FerretDB v1
on SQLite). Runtime state (data, logs, pids) lives in .runtime/ in the repo.
Only the standard library plus the workspace's own packages are used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "deploy" / "local"
RUNTIME = Path(os.environ.get("LIFTSTACK_RUNTIME", REPO / ".runtime"))
CACHE = Path(os.environ.get("LIFTSTACK_CACHE", Path.home() / ".cache" / "liftstack"))
PIDS = RUNTIME / "pids"
LOGS = RUNTIME / "logs"

KAFKA_PORT = int(os.environ.get("LIFTSTACK_KAFKA_PORT", "9092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("LIFTSTACK_KAFKA_CONTROLLER_PORT", "9093"))
MONGO_PORT = int(os.environ.get("LIFTSTACK_MONGO_PORT", "27017"))
# 1: one broker (the default); 3: a cluster that survives losing one node.
KAFKA_BROKERS = int(os.environ.get("LIFTSTACK_KAFKA_BROKERS", "1"))
if KAFKA_BROKERS not in (1, 3):
    sys.exit("LIFTSTACK_KAFKA_BROKERS is 1 or 3")
# Replication of every topic (and Kafka's internal ones), and the in-sync copies an
# acks=all write needs: a cluster keeps every acknowledged write through one node's loss.
KAFKA_REPLICATION = 1 if KAFKA_BROKERS == 1 else 3
KAFKA_MIN_INSYNC = 1 if KAFKA_BROKERS == 1 else 2


def say(message: str) -> None:
    print(f"[liftstack] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def _pid_file(name: str) -> Path:
    return PIDS / f"{name}.pid"


def running_pid(name: str) -> int | None:
    path = _pid_file(name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return pid


def spawn(name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> int:
    """Start a detached process (own session, so a Ctrl-C here doesn't kill it)."""
    PIDS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the log's descriptor; ours closes right away.
    with open(LOGS / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(name).write_text(str(proc.pid))
    return proc.pid


def stop(name: str, timeout_s: float = 20.0) -> None:
    pid = running_pid(name)
    if pid is None:
        return
    say(f"stopping {name} (pid {pid})")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        say(f"{name} did not stop in {timeout_s}s; killing it")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _pid_file(name).unlink(missing_ok=True)


def _tail(name: str, lines: int = 30) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- provisioning


def kafka_version() -> str:
    pom = (LOCAL / "kafka" / "pom.xml").read_text()
    return pom.split("<kafka.version>")[1].split("</kafka.version>")[0]


def provision_kafka() -> Path:
    """The broker classpath, downloaded once per Kafka version."""
    libs = CACHE / f"kafka-{kafka_version()}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    say(f"provisioning Kafka {kafka_version()} from Maven Central (first run only)")
    if shutil.which("mvn") is None:
        sys.exit("mvn is required to provision Kafka (apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        # stdout carries only the `export` lines that callers eval; tools talk on stderr.
        cwd=LOCAL / "kafka",
        check=True,
        stdout=sys.stderr,
    )
    marker.touch()
    return libs


def provision_ferretdb() -> Path:
    """The FerretDB binary, rebuilt only when its Go sources change."""
    src = LOCAL / "ferretdb"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((src / name).read_bytes())
    binary = CACHE / f"ferretdb-{digest.hexdigest()[:12]}" / "ferretdb"
    if binary.exists():
        return binary
    say("building FerretDB (first run only, about a minute)")
    if shutil.which("go") is None:
        sys.exit("go is required to build FerretDB")
    binary.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=src, check=True, stdout=sys.stderr)
    return binary


# --------------------------------------------------------------------------- infrastructure


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        """Its process name (pid and log file): "kafka" alone, "kafka-<n>" in a cluster."""
        return "kafka" if KAFKA_BROKERS == 1 else f"kafka-{self.node_id}"

    @property
    def home(self) -> Path:
        return RUNTIME / self.name


def kafka_nodes() -> list[KafkaNode]:
    return [
        KafkaNode(n, KAFKA_PORT + 2 * (n - 1), KAFKA_CONTROLLER_PORT + 2 * (n - 1)) for n in range(1, KAFKA_BROKERS + 1)
    ]


def kafka_bootstrap() -> str:
    return ",".join(f"127.0.0.1:{node.port}" for node in kafka_nodes())


def mongo_url() -> str:
    return f"mongodb://127.0.0.1:{MONGO_PORT}/"


def start_kafka() -> None:
    for node in kafka_nodes():
        start_kafka_node(node)


def start_kafka_node(node: KafkaNode) -> None:
    """Start one node if it isn't running (formatting its storage the first time)."""
    if running_pid(node.name):
        return
    libs = provision_kafka()
    home = node.home
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in kafka_nodes())
    props = home / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=6",
                f"default.replication.factor={KAFKA_REPLICATION}",
                f"min.insync.replicas={KAFKA_MIN_INSYNC}",
                f"offsets.topic.replication.factor={KAFKA_REPLICATION}",
                "offsets.topic.num.partitions=12",
                f"transaction.state.log.replication.factor={KAFKA_REPLICATION}",
                f"transaction.state.log.min.isr={KAFKA_MIN_INSYNC}",
                f"share.coordinator.state.topic.replication.factor={KAFKA_REPLICATION}",
                f"share.coordinator.state.topic.min.isr={KAFKA_MIN_INSYNC}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=168",
                "",
            ]
        )
    )
    classpath = f"{libs}/*"
    java = [
        "java",
        "-Xms256m",
        # Three nodes share the machine: less heap each.
        "-Xmx1g" if KAFKA_BROKERS == 1 else "-Xmx512m",
        "-XX:+UseG1GC",
        f"-Dkafka.logs.dir={home / 'logs'}",
        f"-Dlog4j2.configurationFile={LOCAL / 'log4j2.yaml'}",
        "-cp",
        classpath,
    ]
    if not (data / "meta.properties").exists():
        say(f"formatting Kafka storage (KRaft){'' if KAFKA_BROKERS == 1 else f' of node {node.node_id}'}")
        subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", kafka_cluster_id(), "-c", str(props)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    say(f"starting Kafka {'' if KAFKA_BROKERS == 1 else f'node {node.node_id} '}on 127.0.0.1:{node.port}")
    spawn(node.name, [*java, "kafka.Kafka", str(props)])


def kafka_cluster_id() -> str:
    """One id for every node of this runtime's cluster, kept with its data."""
    path = RUNTIME / "kafka-cluster-id"
    if not path.exists():
        RUNTIME.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text().strip()


def start_ferretdb() -> None:
    if running_pid("ferretdb"):
        return
    binary = provision_ferretdb()
    say(f"starting FerretDB (SQLite) on 127.0.0.1:{MONGO_PORT}")
    spawn(
        "ferretdb",
        [str(binary), "-listen", f"127.0.0.1:{MONGO_PORT}", "-data", str(RUNTIME / "ferretdb")],
    )


async def _wait_infra(timeout_s: float) -> None:
    import logging

    # aiokafka logs every refused connection while the broker boots; that's expected.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from pymongo import AsyncMongoClient

    from liftstack_shared.kafka import ensure_topics, kafka_ready
    from liftstack_shared.settings import CommonSettings

    async def mongo() -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            client = AsyncMongoClient(mongo_url(), serverSelectionTimeoutMS=2000)
            try:
                await client.admin.command("ping")
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"FerretDB did not answer a ping:\n{_tail('ferretdb')}") from None
                await asyncio.sleep(0.5)
            finally:
                await client.close()

    async def kafka() -> None:
        try:
            await kafka_ready(kafka_bootstrap(), timeout_s)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{_tail(kafka_nodes()[0].name)}") from None
        await ensure_topics(
            CommonSettings(
                kafka_bootstrap=kafka_bootstrap(),
                topic_prefix="",
                topic_replication_factor=KAFKA_REPLICATION,
                topic_min_insync_replicas=KAFKA_MIN_INSYNC,
            )
        )

    await asyncio.gather(mongo(), kafka())


def infra_env() -> dict[str, str]:
    env = {"LIFTSTACK_KAFKA_BOOTSTRAP": kafka_bootstrap(), "LIFTSTACK_MONGO_URL": mongo_url()}
    if KAFKA_BROKERS > 1:
        # Topics the services and tests create are replicated like the cluster's own.
        env["LIFTSTACK_TOPIC_REPLICATION_FACTOR"] = str(KAFKA_REPLICATION)
        env["LIFTSTACK_TOPIC_MIN_INSYNC_REPLICAS"] = str(KAFKA_MIN_INSYNC)
    return env


def infra_up(timeout_s: float = 120.0) -> None:
    # Provision both before starting either, so a slow first build doesn't eat the
    # other's start-up timeout.
    provision_kafka()
    provision_ferretdb()
    start_kafka()
    start_ferretdb()
    asyncio.run(_wait_infra(timeout_s))
    (RUNTIME / "infra.env").write_text("".join(f"export {k}={v}\n" for k, v in infra_env().items()))
    say("Kafka and FerretDB are up")


def infra_down() -> None:
    stop("ferretdb")
    for node in kafka_nodes():
        stop(node.name, timeout_s=40)


# --------------------------------------------------------------------------- services


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int


SERVICES = (
    Service("iterable-sandbox", "liftstack_sandbox", 8200),
    Service("connections", "liftstack_connections", 8101),
    Service("ingest", "liftstack_ingest", 8102),
    Service("writeback", "liftstack_writeback", 8103),
    Service("templates", "liftstack_templates", 8104),
    Service("audiences", "liftstack_audiences", 8105),
    Service("experiments", "liftstack_experiments", 8106),
    Service("console", "liftstack_console", 8080),
)


def dev_env() -> dict[str, str]:
    """Development secrets, generated once per checkout and kept in .runtime/dev.env."""
    path = RUNTIME / "dev.env"
    if not path.exists():
        RUNTIME.mkdir(parents=True, exist_ok=True)
        from cryptography.fernet import Fernet

        values = {
            "LIFTSTACK_MASTER_KEYS": Fernet.generate_key().decode(),
            "LIFTSTACK_SERVICE_TOKEN": secrets.token_urlsafe(32),
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)
        say(f"generated development secrets in {path}")
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        # LIFTSTACK_JWT_SECRET: written by older checkouts; user tokens are no longer
        # verified with a shared secret, so it is not handed to anything.
        if key and key != "LIFTSTACK_JWT_SECRET":
            env[key] = value
    return env


CONSOLE_URL = "http://127.0.0.1:8080"
DEMO_SIGNING_KEY = RUNTIME / "demo-signing-key.pem"
# How users sign in: "demo" (the console's demo sign-in, the default) or "oidc"
# (the local OpenID Connect provider, deploy/local/idp, with its fixed test users).
SIGNIN = os.environ.get("LIFTSTACK_SIGNIN", "demo")
IDP_PORT = int(os.environ.get("LIFTSTACK_IDP_PORT", "8300"))


def local_idp():
    """The local provider's configuration: its signing key and the console's client
    registration, generated once into .runtime/idp (0600)."""
    from liftstack_console import local_idp as idp

    return idp.load_or_write_config(RUNTIME / "idp", port=IDP_PORT, console_url=CONSOLE_URL)


def identity_up() -> None:
    if SIGNIN != "oidc":
        return
    from liftstack_console import local_idp as idp

    config = local_idp()
    if running_pid("identity-provider") is None:
        spawn("identity-provider", idp.command(config))
    try:
        idp.wait_ready(config.issuer)
    except RuntimeError as exc:
        raise SystemExit(f"{exc}:\n{_tail('identity-provider')}") from None
    say(f"{'identity-provider':<18} {config.issuer}  (users: deploy/local/idp/users.json)")


def user_token_settings() -> dict[str, str]:
    """Which issuer every service trusts for user tokens (public keys only)."""
    if SIGNIN == "oidc":
        config = local_idp()
        return {
            "LIFTSTACK_OIDC_ISSUER": config.issuer,
            "LIFTSTACK_OIDC_JWKS_URL": config.jwks_url,
            "LIFTSTACK_OIDC_AUDIENCE": config.audience,
        }
    # The demo has no identity provider, so every service trusts the console's demo
    # signer, by its public keys (asymmetric; no shared secret).
    return {"LIFTSTACK_OIDC_ISSUER": f"{CONSOLE_URL}/demo", "LIFTSTACK_OIDC_JWKS_URL": f"{CONSOLE_URL}/demo/jwks.json"}


def demo_signing_key() -> Path:
    """The demo's token signing key (RSA, private): only the console gets its path.
    Services get the console's public JWKS URL (see `services_env`)."""
    if not DEMO_SIGNING_KEY.exists():
        from liftstack_console.demo_signer import generate_key_file

        generate_key_file(DEMO_SIGNING_KEY)
        say(f"generated the demo token signing key in {DEMO_SIGNING_KEY}")
    return DEMO_SIGNING_KEY


def console_env() -> dict[str, str]:
    """What only the console gets: its sign-in's secrets (the provider's client
    secret, or the demo signing key)."""
    if SIGNIN == "oidc":
        config = local_idp()
        return {
            "LIFTSTACK_OIDC_CLIENT_ID": config.client_id,
            "LIFTSTACK_OIDC_CLIENT_SECRET": config.client_secret,
            "LIFTSTACK_CONSOLE_PUBLIC_URL": CONSOLE_URL,
        }
    return {
        "LIFTSTACK_DEMO_SIGNIN": "true",
        "LIFTSTACK_DEMO_SIGNING_KEY_FILE": str(demo_signing_key()),
        "LIFTSTACK_CONSOLE_PUBLIC_URL": CONSOLE_URL,
    }


def services_env() -> dict[str, str]:
    urls = {s.name: f"http://127.0.0.1:{s.port}" for s in SERVICES}
    return {
        **infra_env(),
        **dev_env(),
        "LIFTSTACK_CONNECTIONS_URL": urls["connections"],
        "LIFTSTACK_INGEST_PUBLIC_URL": urls["ingest"],
        "LIFTSTACK_ITERABLE_BASE_URL": urls["iterable-sandbox"],
        # Where the console finds ingest and experiments, and where experiments finds
        # the services the campaign loop drives (and the sandbox's admin API).
        "LIFTSTACK_INGEST_URL": urls["ingest"],
        "LIFTSTACK_EXPERIMENTS_URL": urls["experiments"],
        "LIFTSTACK_WRITEBACK_URL": urls["writeback"],
        "LIFTSTACK_TEMPLATES_URL": urls["templates"],
        "LIFTSTACK_AUDIENCES_URL": urls["audiences"],
        "LIFTSTACK_SANDBOX_URL": urls["iterable-sandbox"],
        # The sandbox applies bulk updates at once; real Iterable needs the default 600 s.
        "LIFTSTACK_READINESS_SETTLE_S": "5",
        **user_token_settings(),
    }


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def services_up(timeout_s: float = 60.0) -> None:
    import importlib.util

    env = services_env()
    started = []
    for service in SERVICES:
        if importlib.util.find_spec(service.module) is None:
            say(f"service {service.name}: package {service.module} is not installed; skipped")
            continue
        if running_pid(service.name) is None:
            spawn(
                service.name,
                [sys.executable, "-m", service.module],
                # The sandbox reads its own LIFTSTACK_SANDBOX_* settings.
                env={
                    **env,
                    **(console_env() if service.name == "console" else {}),
                    "LIFTSTACK_PORT": str(service.port),
                    "LIFTSTACK_SANDBOX_PORT": str(service.port),
                },
            )
        started.append(service)
    deadline = time.monotonic() + timeout_s
    for service in started:
        while not _healthy(service.port):
            if running_pid(service.name) is None or time.monotonic() > deadline:
                raise SystemExit(f"service {service.name} did not become healthy:\n{_tail(service.name)}")
            time.sleep(0.3)
        say(f"{service.name:<18} http://127.0.0.1:{service.port}  (healthz ok)")


def demo_secrets() -> dict[str, str]:
    """The demo's sandbox API key and webhook secret, generated once per checkout (kept
    apart from dev.env so no service gets them in its environment)."""
    path = RUNTIME / "demo.env"
    if not path.exists():
        RUNTIME.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"DEMO_ITERABLE_API_KEY={secrets.token_hex(16)}\nDEMO_WEBHOOK_SECRET={secrets.token_urlsafe(24)}\n"
        )
        path.chmod(0o600)
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def seed_demo() -> None:
    """The demo workspace: a sandbox project + key + demo list, and a connection to it
    made through the connections API. Idempotent (safe on every `up`)."""
    from liftstack_console.demo_signer import DemoSigner
    from liftstack_console.seed import seed_demo as seed
    from liftstack_console.settings import ConsoleSettings
    from liftstack_shared.auth import Role

    env = services_env()
    demo = demo_secrets()
    settings = ConsoleSettings(
        connections_url=env["LIFTSTACK_CONNECTIONS_URL"],
        oidc_issuer=env["LIFTSTACK_OIDC_ISSUER"],
    )
    # The seed acts as the demo workspace's Owner: signed in through the local
    # provider as its Owner of ws-demo, or with a token of the demo signer.
    if SIGNIN == "oidc":
        from liftstack_console import local_idp as idp

        owner = idp.load_users()["owner-a"]
        owner_token = idp.access_token(local_idp(), owner["login"], owner["password"])
    else:
        signer = DemoSigner(demo_signing_key(), issuer=settings.oidc_issuer, audience=settings.oidc_audience)
        owner_token = signer.token("demo-seed", settings.demo_workspace, Role.OWNER, ttl_s=600)
    result = asyncio.run(
        seed(
            settings,
            sandbox_url=env["LIFTSTACK_SANDBOX_URL"],
            workspace_id=settings.demo_workspace,
            owner_token=owner_token,
            api_key=demo["DEMO_ITERABLE_API_KEY"],
            webhook_secret=demo["DEMO_WEBHOOK_SECRET"],
        )
    )
    say(
        f"demo workspace {result.workspace_id}: connection {result.connection_id}, "
        f"sandbox project {result.project_id}, list {result.list_id} ({result.members:,} members)"
    )


def services_down() -> None:
    for service in reversed(SERVICES):
        stop(service.name)
    stop("identity-provider")


def status() -> int:
    code = 0
    infra = [*(node.name for node in kafka_nodes()), "ferretdb"]
    for name in [*infra, "identity-provider", *(s.name for s in SERVICES)]:
        pid = running_pid(name)
        print(f"{name:<18} {f'running (pid {pid})' if pid else 'stopped'}")
        if pid is None and name in infra:
            code = 1
    return code


def main() -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.splitlines()[0])
    parser.add_argument("scope", choices=["infra", "all"])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args()

    if args.command == "up":
        infra_up()
        if args.scope == "all":
            identity_up()
            services_up()
            if _healthy(8080) and _healthy(8200) and _healthy(8101):
                seed_demo()
                say("console: http://127.0.0.1:8080  (open it in a browser; `./liftstack demo` runs the loop headless)")
        env = infra_env() if args.scope == "infra" else services_env()
        # Secrets stay in .runtime/dev.env; print only where things are.
        for key, value in env.items():
            if key in ("LIFTSTACK_MASTER_KEYS", "LIFTSTACK_SERVICE_TOKEN"):
                continue
            print(f"export {key}={value}")
        return 0
    if args.command == "down":
        if args.scope == "all":
            services_down()
        infra_down()
        return 0
    if args.command == "env":
        for key, value in infra_env().items():
            print(f"export {key}={value}")
        return 0
    return status()


if __name__ == "__main__":
    sys.exit(main())
