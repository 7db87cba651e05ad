"""Run summaries, recounted at a bounded rate and saved in `writeback_run_stats`.

After a batch's outcome is recorded, the batch is only *done* once a summary that
includes it has been saved: `refresh()` returns after a recount that started after
the call. Concurrent callers for one run share recounts, and recounts
of one run are at least `min_interval` apart, so the cost stays at about one recount
per run per interval however many batches complete.

Because the batch's Kafka offset is committed only after `refresh()` returns, a crash
between recording an outcome and saving the summary is repaired by redelivery:
the outcome is found, not counted again, and the summary is recounted and saved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from liftstack_writeback.models import RunSummary
from liftstack_writeback.store import JobStore

log = logging.getLogger(__name__)

_IDLE_FORGET_S = 600.0


@dataclass
class _RunState:
    waiters: list[asyncio.Future[RunSummary]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    last: float = float("-inf")
    used: float = field(default_factory=time.monotonic)


class ProgressTracker:
    def __init__(self, store: JobStore, min_interval: float = 1.0) -> None:
        self._store = store
        self._min_interval = min_interval
        self._runs: dict[tuple[str, int], _RunState] = {}

    async def refresh(self, job_id: str, run: int) -> RunSummary:
        """Recount the run (sharing a pending recount) and save it."""
        key = (job_id, run)
        state = self._runs.get(key)
        if state is None:
            self._forget_idle()
            state = self._runs[key] = _RunState()
        state.used = time.monotonic()
        waiter: asyncio.Future[RunSummary] = asyncio.get_running_loop().create_future()
        state.waiters.append(waiter)
        if state.task is None or state.task.done():
            state.task = asyncio.create_task(self._recount_loop(key, state))
        return await waiter

    async def _recount_loop(self, key: tuple[str, int], state: _RunState) -> None:
        while state.waiters:
            wait = state.last + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            waiters, state.waiters = state.waiters, []
            state.last = time.monotonic()
            try:
                summary = await self._store.summarize_run(*key)
                if summary is None:
                    raise LookupError(f"run {key} is not recorded")
                await self._store.save_summary(summary)
            except Exception as exc:  # noqa: BLE001 - handed to every waiter to retry
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            if summary.finished:
                log.info(
                    "writeback job %s run %d %s: %d/%d written, %d succeeded, %d failed %s, %.0f profiles/s",
                    key[0],
                    key[1],
                    summary.status,
                    summary.written,
                    summary.header.total,
                    summary.succeeded,
                    summary.failed,
                    summary.failed_by_reason,
                    summary.profiles_per_second,
                )
            for w in waiters:
                if not w.done():
                    w.set_result(summary)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for key, state in list(self._runs.items()):
            if not state.waiters and now - state.used > _IDLE_FORGET_S:
                del self._runs[key]

    async def aclose(self) -> None:
        for state in self._runs.values():
            if state.task is not None:
                state.task.cancel()
