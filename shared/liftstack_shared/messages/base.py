from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every Kafka message: strict about unknown fields, carries its version."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
