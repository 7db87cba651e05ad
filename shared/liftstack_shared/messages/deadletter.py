from __future__ import annotations

from datetime import datetime

from pydantic import Field

from liftstack_shared.messages.base import Message, utcnow


class DeadLetter(Message):
    """A message a consumer could not process, with why. `payload` is the original
    bytes decoded as UTF-8 (with replacement), so schema-invalid input survives."""

    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    consumer: str
    reason: str
    payload: str
    at: datetime = Field(default_factory=utcnow)
