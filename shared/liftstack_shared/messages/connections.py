from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from liftstack_shared.messages.base import Message, utcnow


class ConnectionChanged(Message):
    """`connection.changed`: lets other services cache settings and drop deleted ones.
    Never carries a credential."""

    connection_id: str
    workspace_id: str
    change: Literal["created", "updated", "deleted", "tested"]
    status: str | None = None
    at: datetime = Field(default_factory=utcnow)
