"""The Events page's rules, pure (no I/O): what the read model holds and how it is
counted and shown. `store.py` keeps it in MongoDB; `consumers.py` feeds it.

An `Entry` is one countable thing the consumer saw: a published event
(`engagement.events`), an observation of the gateway (`ingest.observations`:
filtered, unknown, rejected) or a dead letter of an events consumer
(`engagement.events.deadletter`: "failed downstream").

Counting is at-least-once and duplicate-free for Iterable retries and Kafka
redelivery: an entry is inserted with the Kafka coordinates that claimed it (its
`claim`), counters are incremented, then its id is recorded as counted. A redelivered
message (same coordinates, not yet counted) is counted; a second delivery of the same
event (other coordinates) is a duplicate. Counters are kept per source partition
(`counter_adds`), so each has one writer at a time: every gateway instance runs the
consumer in one group, and FerretDB loses concurrent `$inc`s of one document (see
`liftstack_shared.mongo`). Each counter also remembers the highest offset it holds, so
a batch applied again after failing part-way (the runtime retries it) adds nothing
twice. When the group rebalances, the batch in hand is finished and committed before
its partitions move (`consumers.REVOKE_GRACE_S`), so the next owner starts after it.
Only a crash between the increment and the record, or a batch still in hand when that
grace runs out, followed by a redelivery reaching further than that batch, counts
some messages twice.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiokafka import ConsumerRecord

from liftstack_ingest.models import EventItem, OutcomeCounts, WindowCounts
from liftstack_shared.messages import DeadLetter, EngagementEvent, IngestObservation, IngestOutcome

log = logging.getLogger(__name__)

MINUTE_RETENTION = timedelta(hours=2)
HOUR_RETENTION = timedelta(days=8)
# (window name, bucket granularity, number of buckets including the current one)
WINDOWS: tuple[tuple[str, str, int], ...] = (("1h", "m", 60), ("24h", "h", 24), ("7d", "h", 168))
OUTCOMES = ("published", "filtered", "unknown", "rejected")
# A dead letter of a consumer of events (shown, but not part of "received").
FAILED_DOWNSTREAM = "failed_downstream"
LISTED_OUTCOMES = (*OUTCOMES, FAILED_DOWNSTREAM)
Status = Literal["no_events", "none_processed", "receiving"]


@dataclass
class Entry:
    """One countable thing the consumer saw: a published event or an observation."""

    doc_id: str
    claim: str  # Kafka coordinates of the message that carried it: topic:partition:offset
    connection_id: str
    workspace_id: str
    outcome: str
    at: datetime
    event_name: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The Kafka partition that carried it (`topic:partition`)."""
        return self.claim.rpartition(":")[0]

    @property
    def offset(self) -> int:
        return int(self.claim.rpartition(":")[2])

    def document(self) -> dict[str, Any]:
        return {
            "_id": self.doc_id,
            "claim": self.claim,
            "connection_id": self.connection_id,
            "workspace_id": self.workspace_id,
            "outcome": self.outcome,
            "event_name": self.event_name,
            "reason": self.reason,
            "received_at": self.at,
            **self.details,
        }


@dataclass
class ApplyResult:
    counted: int
    duplicates: int


# ---------------------------------------------------------------- messages -> entries


def to_entry(record: ConsumerRecord[Any, Any], events_topic: str, deadletter_topic: str = "") -> Entry | None:
    """The entry a consumed message stands for, or None if it counts nothing.
    Raises ValidationError/ValueError for a message that breaks its contract."""
    claim = f"{record.topic}:{record.partition}:{record.offset}"
    if record.value is None:
        raise ValueError("empty message")
    if record.topic == deadletter_topic:
        return _failed_downstream(record, deadletter_topic)
    if record.topic == events_topic:
        event = EngagementEvent.model_validate_json(record.value)
        return Entry(
            doc_id=event.event_id,
            claim=claim,
            connection_id=event.connection_id,
            workspace_id=event.workspace_id,
            outcome=IngestOutcome.PUBLISHED.value,
            at=event.received_at,
            event_name=event.iterable_event_name,
            details={
                "event_type": event.event_type.value,
                "email": event.email,
                "user_id": event.user_id,
                "campaign_id": event.campaign_id,
                "template_id": event.template_id,
                "message_id": event.message_id,
                "url": event.url,
                "occurred_at": event.occurred_at,
            },
        )
    observation = IngestObservation.model_validate_json(record.value)
    if observation.outcome is IngestOutcome.PUBLISHED:
        return None  # published events are counted from engagement.events itself
    # Accepted events dedupe on their event id; rejected requests are each counted
    # once (by where they sit in Kafka), since none of them was stored.
    event_id = observation.event_id
    return Entry(
        doc_id=event_id if event_id and observation.outcome is not IngestOutcome.REJECTED else f"obs:{claim}",
        claim=claim,
        connection_id=observation.connection_id,
        workspace_id=observation.workspace_id,
        outcome=observation.outcome.value,
        at=observation.at,
        event_name=observation.event_name,
        reason=observation.reason,
    )


def _failed_downstream(record: ConsumerRecord[Any, Any], deadletter_topic: str) -> Entry | None:
    """A dead letter of an events consumer, as a "failed downstream" entry of the
    connection it belongs to. Never raises: a bad record on the dead-letter topic is
    skipped, not dead-lettered again (that would feed this consumer its own output)."""
    try:
        letter = DeadLetter.model_validate_json(record.value)
    except ValueError:
        log.warning("skipping an unreadable dead letter at %s[%d]@%d", record.topic, record.partition, record.offset)
        return None
    if letter.source_topic == deadletter_topic:
        return None
    try:
        original = json.loads(letter.payload)
    except ValueError:
        original = None
    fields = original if isinstance(original, dict) else {}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) and len(value) <= 200 else None

    # engagement.events is keyed "connection:recipient", ingest.observations by connection.
    connection_id = text("connection_id") or (letter.key.split(":", 1)[0] if letter.key else None)
    if not connection_id:
        return None  # not attributable to a connection: the metric and the CLI show it
    return Entry(
        doc_id=f"dl:{letter.consumer}:{letter.source_id}",  # insert-once per consumer and message
        claim=f"{record.topic}:{record.partition}:{record.offset}",
        connection_id=connection_id,
        workspace_id=text("workspace_id") or "",
        outcome=FAILED_DOWNSTREAM,
        at=letter.at,
        event_name=text("iterable_event_name") or text("event_name"),
        reason=f"{letter.consumer}: {letter.reason}"[:300],
        details={
            "event_id": text("event_id"),
            "event_type": text("event_type"),
            "email": text("email"),
            "consumer": letter.consumer,
            "reason_class": letter.reason_class,
        },
    )


# ------------------------------------------------------------------------ counting


@dataclass(frozen=True)
class CounterAdd:
    """`n` more on one counter document, from one partition's messages up to offset `upto`."""

    doc_id: str
    n: int
    upto: int
    fields: dict[str, Any]


def counter_adds(entries: list[Entry]) -> list[CounterAdd]:
    """The counter increments of a batch: per connection, minute and hour bucket, event
    name, outcome, reason and source partition (one writer per counter document; see
    the module doc)."""
    adds: dict[tuple[Any, ...], tuple[int, int]] = {}
    for e in entries:
        for granularity in ("m", "h"):
            key = (
                e.connection_id,
                e.workspace_id,
                granularity,
                floor(e.at, granularity),
                e.event_name or "",
                e.outcome,
                e.reason or "",
                e.source,
            )
            n, upto = adds.get(key, (0, -1))
            adds[key] = (n + 1, max(upto, e.offset))
    return [
        CounterAdd(
            doc_id=f"{cid}|{gran}|{start.isoformat()}|{name}|{outcome}|{reason}|{source}",
            n=n,
            upto=upto,
            fields={
                "connection_id": cid,
                "workspace_id": ws,
                "granularity": gran,
                "start": start,
                "event_name": name,
                "outcome": outcome,
                "reason": reason,
                "source": source,
            },
        )
        for (cid, ws, gran, start, name, outcome, reason, source), (n, upto) in adds.items()
    ]


def last_seen(entries: list[Entry]) -> dict[tuple[str, str], datetime]:
    """(connection id, workspace id) -> the newest time among the entries."""
    newest: dict[tuple[str, str], datetime] = {}
    for e in entries:
        conn = (e.connection_id, e.workspace_id)
        newest[conn] = max(e.at, newest.get(conn, e.at))
    return newest


def window_starts(now: datetime) -> list[tuple[str, str, datetime]]:
    """(window name, granularity, start of its oldest bucket) for every window."""
    out = []
    for name, granularity, buckets in WINDOWS:
        step = timedelta(minutes=1) if granularity == "m" else timedelta(hours=1)
        out.append((name, granularity, floor(now, granularity) - step * (buckets - 1)))
    return out


def floor(at: datetime, granularity: str) -> datetime:
    at = at.astimezone(UTC)
    if granularity == "m":
        return at.replace(second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def millis(at: datetime) -> datetime:
    """`at` in UTC at millisecond precision (what BSON keeps; cursors compare exactly)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).replace(microsecond=at.microsecond // 1000 * 1000)


# ------------------------------------------------------------------------- showing


def encode_cursor(at: datetime, doc_id: str) -> str:
    raw = f"{millis(at).isoformat()}|{doc_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a malformed cursor."""
    padded = cursor + "=" * (-len(cursor) % 4)
    raw = base64.urlsafe_b64decode(padded.encode()).decode()
    at_text, sep, doc_id = raw.partition("|")
    if not sep or not doc_id:
        raise ValueError("bad cursor")
    at = datetime.fromisoformat(at_text)
    if at.tzinfo is None:
        raise ValueError("bad cursor")
    return at, doc_id


def item(doc: dict[str, Any]) -> EventItem:
    """A stored entry as a line of the recent-events list."""
    doc_id = str(doc["_id"])
    if doc_id.startswith("dl:"):
        event_id = doc.get("event_id")
    else:
        event_id = None if doc_id.startswith("obs:") else doc_id
    return EventItem(
        event_id=event_id,
        event_name=doc.get("event_name"),
        event_type=doc.get("event_type"),
        outcome=doc["outcome"],
        reason=doc.get("reason"),
        email=doc.get("email"),
        user_id=doc.get("user_id"),
        campaign_id=doc.get("campaign_id"),
        template_id=doc.get("template_id"),
        message_id=doc.get("message_id"),
        url=doc.get("url"),
        occurred_at=doc.get("occurred_at"),
        received_at=doc["received_at"],
    )


def window(name: str, counters: list[dict[str, Any]]) -> WindowCounts:
    """One window's counts, summed over its counter documents."""
    totals = OutcomeCounts()
    by_name: dict[str, OutcomeCounts] = {}
    reasons: dict[str, int] = {}
    failed: dict[str, int] = {}
    for doc in counters:
        n = int(doc.get("count", 0))
        outcome = doc.get("outcome", "")
        if outcome == FAILED_DOWNSTREAM:
            reason = doc.get("reason") or "unknown"
            failed[reason] = failed.get(reason, 0) + n
            continue
        if outcome not in OUTCOMES:
            continue
        event_name = doc.get("event_name") or "(none)"
        for counts in (totals, by_name.setdefault(event_name, OutcomeCounts())):
            counts.received += n
            setattr(counts, outcome, getattr(counts, outcome) + n)
        if outcome == "rejected":
            reason = doc.get("reason") or "unknown"
            reasons[reason] = reasons.get(reason, 0) + n
    return WindowCounts(
        window=name,
        totals=totals,
        by_event_name=by_name,
        rejected_by_reason=reasons,
        failed_downstream=sum(failed.values()),
        failed_downstream_by_reason=failed,
    )


def status(windows: list[WindowCounts]) -> Status:
    """The summary's status, from the last 24 h."""
    day = next(w for w in windows if w.window == "24h")
    if day.totals.received == 0:
        return "no_events"
    if day.totals.published == 0:
        return "none_processed"
    return "receiving"
