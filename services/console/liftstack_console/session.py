"""Console sessions, checked on the server.

The browser holds only an opaque random session id (cookie `lf_session`: HttpOnly,
SameSite=Lax, Secure outside plain-HTTP localhost). The session itself lives in
MongoDB (`console_sessions`, keyed by the SHA-256 of the id, so a database reader
can't replay cookies): the signed-in user, their access token (the bearer for every
service call) and when it ends (never after the token expires). Sign-out deletes it,
so a copied cookie is dead from then on.

A sign-in in progress (OIDC state, nonce, PKCE verifier, where to go next) is kept
the same way in `console_signin_flows`, bound to the browser by the `lf_signin`
cookie, and taken exactly once.

FerretDB: every write is a single-document insert or delete; expiry is by query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from liftstack_console.settings import ConsoleSettings
from liftstack_shared.auth import Principal, Role

COOKIE = "lf_session"
FLOW_COOKIE = "lf_signin"
MAX_SESSION = timedelta(hours=12)
FLOW_TTL = timedelta(minutes=10)
# Paths that never need the user (no session lookup).
NO_SESSION_PATHS = ("/static/", "/healthz", "/metrics", "/demo/jwks.json")


@dataclass(frozen=True)
class Session:
    principal: Principal
    token: str


@dataclass(frozen=True)
class SignInFlow:
    code_verifier: str
    nonce: str
    next: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class SessionStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._sessions = db["console_sessions"]
        self._flows = db["console_signin_flows"]

    async def create(self, principal: Principal, token: str, token_expires_at: datetime) -> str:
        now = _now()
        # Expired sessions and abandoned sign-ins are removed by query (no TTL indexes).
        await self._sessions.delete_many({"expires_at": {"$lte": now}})
        await self._flows.delete_many({"expires_at": {"$lte": now}})
        session_id = secrets.token_urlsafe(32)
        await self._sessions.insert_one(
            {
                "_id": _digest(session_id),
                "user_id": principal.user_id,
                "workspace_id": principal.workspace_id,
                "role": str(principal.role),
                "token": token,
                "created_at": now,
                "expires_at": min(token_expires_at, now + MAX_SESSION),
            }
        )
        return session_id

    async def get(self, session_id: str) -> Session | None:
        doc = await self._sessions.find_one({"_id": _digest(session_id), "expires_at": {"$gt": _now()}})
        if doc is None:
            return None
        principal = Principal(doc["user_id"], doc["workspace_id"], Role(doc["role"]))
        return Session(principal, doc["token"])

    async def delete(self, session_id: str) -> None:
        await self._sessions.delete_one({"_id": _digest(session_id)})

    async def start_flow(self, state: str, flow: SignInFlow) -> None:
        await self._flows.insert_one(
            {
                "_id": _digest(state),
                "code_verifier": flow.code_verifier,
                "nonce": flow.nonce,
                "next": flow.next,
                "expires_at": _now() + FLOW_TTL,
            }
        )

    async def take_flow(self, state: str) -> SignInFlow | None:
        """The sign-in started with this state, once: a replayed callback finds nothing."""
        key = _digest(state)
        doc = await self._flows.find_one({"_id": key, "expires_at": {"$gt": _now()}})
        if doc is None or (await self._flows.delete_one({"_id": key})).deleted_count != 1:
            return None
        return SignInFlow(doc["code_verifier"], doc["nonce"], doc["next"])


def set_session_cookie(response: Response, settings: ConsoleSettings, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(MAX_SESSION.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )


def set_flow_cookie(response: Response, settings: ConsoleSettings, state: str) -> None:
    # Lax is what lets the provider's top-level redirect back carry it.
    response.set_cookie(
        FLOW_COOKIE,
        state,
        max_age=int(FLOW_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/auth/",
    )


def clear_flow_cookie(response: Response, settings: ConsoleSettings) -> None:
    response.delete_cookie(FLOW_COOKIE, path="/auth/", httponly=True, samesite="lax", secure=settings.cookie_secure)


def clear_cookies(response: Response, settings: ConsoleSettings) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure)
    clear_flow_cookie(response, settings)


def current(request: Request) -> Session | None:
    """The session the middleware found for this request, or None."""
    return request.scope.get("state", {}).get("session")


class SessionMiddleware:
    """Looks the request's session up once, so pages and API routes read it without I/O."""

    def __init__(self, app: ASGIApp, store: SessionStore) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(NO_SESSION_PATHS):
            session_id = Request(scope).cookies.get(COOKIE)
            scope.setdefault("state", {})["session"] = await self.store.get(session_id) if session_id else None
        await self.app(scope, receive, send)
