from __future__ import annotations

import base64
from datetime import datetime

from pydantic import Field

from liftstack_shared.messages.base import Message, utcnow


class DeadLetter(Message):
    """A message a consumer could not process, with why. `payload` is the original
    bytes decoded as UTF-8 (with replacement), so schema-invalid input survives; when
    the bytes are not valid UTF-8, `payload_base64` holds them exactly (for replay).

    Built in one place: `liftstack_shared.consumer.build_dead_letter`."""

    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    consumer: str
    reason: str
    payload: str
    at: datetime = Field(default_factory=utcnow)
    # Since schema 1 (optional, so older letters still parse):
    reason_class: str | None = None  # validation, overflow, encoding, storage, rejected, error
    error_type: str | None = None  # the exception's class name
    attempts: int = 1
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None
    payload_base64: str | None = None
    payload_truncated: bool = False

    @property
    def source_id(self) -> str:
        """Where the failed message sits in Kafka: what a replay is recorded under."""
        return f"{self.source_topic}:{self.partition}:{self.offset}"

    def original_bytes(self) -> bytes:
        if self.payload_base64 is not None:
            return base64.b64decode(self.payload_base64)
        return self.payload.encode("utf-8")
