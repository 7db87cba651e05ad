"""The `liftstack` command line.

`liftstack demo`: the whole campaign loop, headless, through the console's own API
(the same calls the wizard's pages make), with progress bars and the results table.

    liftstack demo [--console http://127.0.0.1:8080] [--connection NAME] [--list NAME]

Needs a running stack (`./liftstack up`, which seeds the demo workspace).

`liftstack deadletters`: what the consumers dead-lettered, and replaying it after a fix
(Kafka and MongoDB from the `LIFTSTACK_*` environment; see liftstack_shared.deadletters).

    liftstack deadletters list [--topic NAME ...]
    liftstack deadletters replay (--all | --id ID ...) [--topic NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from liftstack_console.seed import CONNECTION_NAME, LIST_NAME

DEMO_VARIANTS = [
    {
        "name": "A",
        "subject": "Spring sale: 20% off everything",
        "preheader": "This weekend only",
        "html": "<h1>Spring sale, {{firstName}}</h1><p>20% off everything this weekend.</p>"
        '<p><a href="https://shop.example.com/sale?v=a">Shop now</a></p>',
    },
    {
        "name": "B",
        "subject": "{{firstName}}, your 20% is waiting",
        "preheader": "Picked for you",
        "html": "<h1>Your spring picks, {{firstName}}</h1><p>We saved 20% for you.</p>"
        '<p><a href="https://shop.example.com/picks?v=b">See your picks</a></p>',
    },
]


class DemoError(Exception):
    pass


class Bar:
    """A one-line terminal progress bar (redrawn in place on a TTY)."""

    def __init__(self, label: str, total: int | None = None, out: Any = None) -> None:
        self.label, self.total, self.out = label, total, out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._last = ""

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        total = total if total is not None else self.total
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            line = f"{self.label:<22} [{bar}] {done:>7,}/{total:,} {note}"
        else:
            line = f"{self.label:<22} {done:>7,} {note}"
        if line == self._last:
            return
        self._last = line
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        elif done == total or not total:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self, note: str = "") -> None:
        if self.tty:
            self.out.write("\n")
        if note:
            self.out.write(f"{'':<22} {note}\n")
        self.out.flush()


class ConsoleClient:
    def __init__(self, base: str, timeout: float = 120.0) -> None:
        # The console refuses state-changing requests that don't name its own origin
        # (its CSRF check); this client is the console's own, so it says so.
        self.http = httpx.Client(
            base_url=base.rstrip("/"), timeout=timeout, follow_redirects=False, headers={"Origin": base.rstrip("/")}
        )

    def sign_in(self, role: str = "owner") -> None:
        """The demo stack's sign-in (`./liftstack up`); with an identity provider, sign
        `self.http` in through it instead."""
        r = self.http.post("/signin", data={"role": role, "next": "/campaigns"})
        if r.status_code != 303 or "lf_session" not in self.http.cookies:
            raise DemoError(f"demo sign-in failed (HTTP {r.status_code})")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body)
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except Exception:  # noqa: BLE001 - any non-JSON error body
                message = r.text[:200]
            raise DemoError(f"{method} {path}: HTTP {r.status_code}: {message}")
        return r.json() if r.content else None


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every)


def run_demo(
    base: str,
    connection_name: str = CONNECTION_NAME,
    list_name: str = LIST_NAME,
    timeout_s: float = 600.0,
    out: Any = None,
    settle_s: float = 5.0,
    send_options: dict[str, Any] | None = None,
    client: ConsoleClient | None = None,
) -> dict[str, Any]:
    """`client`: an already signed-in Owner (default: the demo sign-in as Owner)."""
    out = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    c = client
    if c is None:
        c = ConsoleClient(base)
        c.sign_in("owner")

    conns = c.call("GET", "/api/connections")["connections"]
    conn = next((x for x in conns if x["name"] == connection_name), None)
    if conn is None:
        raise DemoError(f"no connection named {connection_name!r} (run ./liftstack up to seed it)")
    test = c.call("POST", f"/api/connections/{conn['id']}/test")
    say(f"connection    {conn['name']}: {'Connected' if test['ok'] else 'Error: ' + test['message']}")
    if not test["ok"]:
        raise DemoError("the connection test failed")

    key = "demo_" + secrets.token_hex(3)
    campaign = c.call(
        "POST",
        "/api/campaigns",
        {
            "name": f"Demo {key}",
            "key": key,
            "connection_id": conn["id"],
            "variants": DEMO_VARIANTS,
            "control": "A",
        },
    )
    cid = campaign["id"]
    say(f"campaign      {cid} (lf_assignments.{key}), variants A (control) and B")

    audiences = c.call("GET", f"/api/campaigns/{cid}/audiences")["audiences"]
    audience = next((a for a in audiences if a["name"] == list_name), None)
    if audience is None:
        raise DemoError(f"no list named {list_name!r} in the connection's project")
    c.call("POST", f"/api/campaigns/{cid}/sync", {"list_id": audience["id"], "list_name": audience["name"]})
    state: dict[str, Any] = {}

    def refresh() -> dict[str, Any]:
        state.update(c.call("GET", f"/api/campaigns/{cid}"))
        return state

    bar = Bar("audience sync", audience.get("size"), out)

    def synced() -> bool:
        sync = refresh()["sync"]
        bar.update(sync.get("members", 0), note=sync["status"])
        if sync["status"] == "failed":
            raise DemoError(f"audience sync failed: {sync.get('error')}")
        return bool(sync["status"] == "completed")

    wait_for(synced, timeout_s, "the audience sync")
    bar.done()

    c.call("POST", f"/api/campaigns/{cid}/assign")

    def assigned() -> bool:
        a = refresh()["assignment"] or {}
        if a.get("status") == "failed":
            raise DemoError(f"assignment failed: {a.get('error')}")
        return a.get("status") == "completed"

    wait_for(assigned, timeout_s, "the assignment")
    a = state["assignment"]
    say(
        f"assignment    {a['total']:,} recipients: "
        + ", ".join(f"{k} {v:,}" for k, v in a["counts"].items())
        + f" ({a['batch_count']} batches)"
    )

    bar = Bar("writeback", a["total"], out)

    def written() -> bool:
        wb = refresh()["writeback"] or {}
        bar.update(
            wb.get("written", 0),
            wb.get("total") or a["total"],
            f"ok {wb.get('succeeded', 0):,} failed {wb.get('failed', 0):,}",
        )
        return wb.get("status") in ("completed", "completed_with_failures", "failed")

    wait_for(written, timeout_s, "the writeback")
    wb = state["writeback"]
    bar.done(f"{wb['status']}" + (f", failures: {wb['failed_by_reason']}" if wb.get("failed") else ""))
    if wb["status"] != "completed":
        raise DemoError(f"writeback ended {wb['status']}")

    c.call("POST", f"/api/campaigns/{cid}/template/generate")
    for v in DEMO_VARIANTS:
        p = c.call("GET", f"/api/campaigns/{cid}/template/preview/{v['name']}")
        say(f"preview {v['name']}     subject: {p.get('subject')!r}")
    t = c.call("POST", f"/api/campaigns/{cid}/template/publish")
    say(f"template      published as Iterable template {t['iterable_template_id']}")
    say("ready to send in Iterable; the sandbox sends it now")

    send = c.call("POST", f"/api/campaigns/{cid}/send", {"seed": 7, **(send_options or {})})
    say(
        f"send          {send['sent']:,} sent, events: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(send["events"].items()))
    )

    expected_sends = send["sent"]
    bar = Bar("results (sends)", expected_sends, out)
    last: dict[str, Any] = {}
    stable_since = [time.monotonic()]

    def counted() -> bool:
        table = c.call("GET", f"/api/campaigns/{cid}/results")
        sends = sum(v["metrics"]["send"]["count"] for v in table["variants"])
        bar.update(sends, note=f"{table['events']:,} events")
        if table != last:
            last.clear()
            last.update(table)
            stable_since[0] = time.monotonic()
        # Done when every send is counted and nothing changed for a few seconds.
        return sends >= expected_sends and time.monotonic() - stable_since[0] >= settle_s

    wait_for(counted, timeout_s, "the results", every=1.0)
    bar.done()
    say("")
    say(format_table(last))
    say(f"\nconsole: {base.rstrip('/')}/campaigns/{cid}")
    return {"campaign_id": cid, "results": last, "send": send}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def format_table(table: dict[str, Any]) -> str:
    metrics = [
        ("send", "sends"),
        ("open", "opens"),
        ("click", "clicks"),
        ("conversion", "conversions"),
        ("unsubscribe", "unsubs"),
    ]
    head = f"{'variant':<10}{'assigned':>10}" + "".join(f"{label:>24}" for _, label in metrics)
    lines = [head, "-" * len(head)]
    for v in table["variants"]:
        cells = []
        for t, _ in metrics:
            m = v["metrics"][t]
            cell = f"{m['count']:,}"
            if m["rate"] is not None:
                cell += f" {_pct(m['rate'])}"
            lift = m.get("lift")
            if lift and lift["lift"] is not None:
                cell += f" {100 * lift['lift']:+.0f}%"
            cells.append(f"{cell:>24}")
        name = v["name"] + (" (c)" if v["control"] else "")
        lines.append(f"{name:<10}{v['assigned']:>10,}" + "".join(cells))
    srm = table["srm"]
    lines.append("")
    lines.append("lift is relative to the control (c); 95% intervals are on the results page")
    lines.append(
        f"sample ratio check ({srm['basis']}): p = {srm['p_value']:.3g} " + ("MISMATCH" if srm["mismatch"] else "ok")
    )
    return "\n".join(lines)


def deadletters_command(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    from liftstack_shared import deadletters as dl
    from liftstack_shared.mongo import database, make_mongo_client
    from liftstack_shared.settings import CommonSettings

    settings = CommonSettings()

    async def run() -> int:
        topics = dl.deadletter_topics(settings, args.topic or None)
        letters = await dl.read_letters(settings, topics)
        mongo = make_mongo_client(settings)
        try:
            db = database(mongo, settings)
            if args.action == "list":
                replays = await dl.replay_records(db)
                out.write(f"{len(letters)} dead letter(s) on {', '.join(topics)}\n")
                for s in letters:
                    item = s.letter
                    done = replays.get(item.source_id)
                    out.write(
                        f"{s.id}  {dl.when(item.at)}  {item.consumer}  {item.reason_class or '-'}  "
                        f"source {item.source_topic}[{item.partition}]@{item.offset}  attempts {item.attempts}  "
                        f"{'replayed ' + dl.when(done['replayed_at']) if done else 'not replayed'}\n"
                        f"    {item.reason}\n"
                    )
                return 0
            chosen = letters if args.all else [s for s in letters if s.id in set(args.id)]
            missing = set(args.id or ()) - {s.id for s in chosen}
            if missing:
                out.write(f"no such dead letter: {', '.join(sorted(missing))}\n")
                return 2
            report = await dl.replay(settings, db, chosen)
            for s in report.replayed:
                out.write(f"replayed {s.id} -> {s.letter.source_topic}\n")
            for s in report.already_replayed:
                out.write(f"skipped {s.id}: its message was replayed already\n")
            out.write(f"{len(report.replayed)} replayed, {len(report.already_replayed)} already replayed\n")
            return 0
        finally:
            await mongo.close()

    try:
        return asyncio.run(run())
    except ValueError as exc:
        out.write(f"liftstack deadletters: {exc}\n")
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liftstack", description="liftstack command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole campaign loop headless against a running stack")
    demo.add_argument("--console", default="http://127.0.0.1:8080", help="console URL")
    demo.add_argument("--connection", default=CONNECTION_NAME)
    demo.add_argument("--list", default=LIST_NAME)
    demo.add_argument("--timeout", type=float, default=600.0)
    dead = sub.add_parser("deadletters", help="list or replay what consumers dead-lettered")
    dead_sub = dead.add_subparsers(dest="action", required=True)
    dead_list = dead_sub.add_parser("list", help="every dead letter: id, time, consumer, reason, source")
    dead_replay = dead_sub.add_parser("replay", help="re-publish dead letters to their source topic")
    for p in (dead_list, dead_replay):
        p.add_argument("--topic", action="append", help="a dead-letter topic (default: all), repeatable")
    which = dead_replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter (of --topic)")
    which.add_argument("--id", action="append", help="a dead letter's id as `list` shows it, repeatable")
    args = parser.parse_args(argv)
    if args.command == "deadletters":
        return deadletters_command(args)
    try:
        run_demo(args.console, args.connection, args.list, args.timeout)
    except (DemoError, httpx.HTTPError) as exc:
        print(f"liftstack demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
