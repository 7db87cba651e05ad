"""Real Handlebars rendering from Python, through one long-running Node process.

Iterable renders templates with Handlebars; the only way to be sure a generated
template renders what we think is to render it with Handlebars itself, with
Iterable's helpers (`shared/handlebars/render-server.js`). The Node process is
spawned once per `HandlebarsRenderer` and compiles each distinct template once.

    async with HandlebarsRenderer() as hb:
        html = await hb.render("Hi {{firstName}}", {"firstName": "Ann"})
        await hb.parse(source)  # raises HandlebarsError on a syntax error

Requests carry ids, so many coroutines can share one renderer concurrently.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

SCRIPT_NAME = "render-server.js"
ENV_DIR = "LIFTSTACK_HANDLEBARS_DIR"
# Templates and batches of contexts travel as single JSON lines.
_LINE_LIMIT = 256 * 1024 * 1024


@dataclass(frozen=True)
class TextEdge:
    """Top-level text at one end of a template: as written, and as Handlebars will
    output it after whitespace control (standalone lines, `~`)."""

    original: str
    value: str


@dataclass(frozen=True)
class ParseResult:
    first: TextEdge | None  # None when the template starts with a tag (or is empty)
    last: TextEdge | None


def _edge(raw: Any) -> TextEdge | None:
    return TextEdge(str(raw["original"]), str(raw["value"])) if raw else None


class HandlebarsError(Exception):
    """Handlebars rejected a template (parse error) or failed to render it, or the
    renderer process is unavailable. The message is Handlebars' own."""


def handlebars_dir() -> Path:
    """`shared/handlebars/`: from LIFTSTACK_HANDLEBARS_DIR, beside this package in
    the repository, or under the current directory."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parent.parent / "handlebars"
    if (beside / SCRIPT_NAME).exists():
        return beside
    return Path.cwd() / "shared" / "handlebars"


class HandlebarsRenderer:
    def __init__(self, directory: Path | str | None = None, node: str | None = None) -> None:
        self._dir = Path(directory) if directory is not None else handlebars_dir()
        self._node = node or os.environ.get("LIFTSTACK_NODE") or shutil.which("node") or "node"
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._dead: str | None = None

    async def __aenter__(self) -> HandlebarsRenderer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._proc is not None:
            return
        script = self._dir / SCRIPT_NAME
        if not script.exists():
            raise HandlebarsError(f"{script} not found; set {ENV_DIR} to the shared/handlebars directory.")
        if not (self._dir / "node_modules" / "handlebars").is_dir():
            raise HandlebarsError(f"{self._dir}/node_modules is missing: run `npm ci --prefix shared/handlebars`.")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self._node,
                str(script),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
            )
        except FileNotFoundError:
            raise HandlebarsError(f"Node.js not found ({self._node}); install Node 18+.") from None
        self._dead = None
        self._reader = asyncio.create_task(self._read_loop(), name="handlebars-reader")

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None

    async def render(self, template: str, context: dict[str, Any]) -> str:
        return (await self.render_many(template, [context]))[0]

    async def render_many(self, template: str, contexts: list[dict[str, Any]]) -> list[str]:
        """One compile, one round trip, one output per context (in order)."""
        if not contexts:
            return []
        reply = await self._request({"template": template, "contexts": contexts})
        outputs = reply["outputs"]
        assert isinstance(outputs, list) and len(outputs) == len(contexts)
        return [str(o) for o in outputs]

    async def parse(self, template: str) -> ParseResult:
        """Raise HandlebarsError unless Handlebars parses and compiles `template`."""
        reply = await self._request({"op": "parse", "template": template})
        return ParseResult(first=_edge(reply.get("first")), last=_edge(reply.get("last")))

    async def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._dead is not None:
            raise HandlebarsError(self._dead)
        if self._proc is None or self._proc.stdin is None:
            raise HandlebarsError("HandlebarsRenderer is not started.")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps({"id": request_id, **payload}, ensure_ascii=False) + "\n"
        try:
            async with self._write_lock:
                self._proc.stdin.write(line.encode())
                await self._proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(request_id, None)
            raise HandlebarsError(self._dead or f"renderer process is gone: {exc}") from None
        reply = await future
        if "error" in reply:
            raise HandlebarsError(str(reply["error"]))
        return reply

    async def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        try:
            while line := await proc.stdout.readline():
                try:
                    reply = json.loads(line)
                except ValueError:
                    continue  # not ours (e.g. a stray log line); ids keep answers apart
                future = self._pending.pop(reply.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(reply)
        finally:
            # The process ended (or spoke garbage): fail whoever is still waiting.
            stderr = (await proc.stderr.read()).decode(errors="replace").strip()
            self._dead = "Handlebars renderer process exited" + (f": {stderr[-2000:]}" if stderr else ".")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(HandlebarsError(self._dead))
            self._pending.clear()
