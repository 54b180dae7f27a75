"""Group commit for the worker's hot path: many concurrent single-task writes become one statement.

(In taskcore, not the worker, because the arq adapter groups its finished jobs with it too.)

Every claim and every success is one guarded UPDATE; at thousands of tasks a second, one
commit per write is the ceiling (see docs/performance.md). A ``Coalescer`` collects the
calls that arrive while the previous statement is in flight (plus, while the worker is
busy, a linger of a few milliseconds) and hands them to ``flush`` together. Each caller still gets its own answer:
the statement keeps every row's status and attempt guard, so a late or duplicate write is
rejected for that task alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

from taskcore.errors import DependencyUnavailable

log = structlog.get_logger("taskflow.worker")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# A flush within the last BUSY_FACTOR lingers means the writer is busy: the next batch lingers
# to grow; after a quiet spell the first write goes at once (an idle worker adds no latency).
BUSY_FACTOR = 2

Flush = Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]]


class Coalescer(Generic[ItemT, ResultT]):
    """``await add(item)`` answers with the result ``flush`` gave for that item.

    At most one ``flush`` runs at a time; items added meanwhile form the next batch (up to
    ``max_batch``). A flush that fails because a dependency is down fails every caller of the
    batch with that error (each retries on its own); any other failure is retried item by item,
    so one bad item cannot take the others with it.
    """

    def __init__(self, flush: Flush[ItemT, ResultT], *, max_batch: int, linger: float, name: str) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._name = name
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._last_flush = float("-inf")

    def add(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Add ``item`` to the next batch; the future answers for it (cancelling it drops the item
        unless its batch is already being written)."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"coalescer-{self._name}")
        return future

    async def _run(self) -> None:
        while self._pending:
            loop = asyncio.get_running_loop()
            if self._linger > 0 and loop.time() - self._last_flush < BUSY_FACTOR * self._linger:
                await asyncio.sleep(self._linger)  # busy: wait for company, fewer and larger statements
            else:
                await asyncio.sleep(0)  # idle: only the callers of this loop iteration join
            self._last_flush = loop.time()
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            batch = [(item, future) for item, future in batch if not future.done()]
            if batch:
                await self._flush_batch(batch)

    async def _flush_batch(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except DependencyUnavailable as exc:
            _settle_all(batch, exc)
            return
        except asyncio.CancelledError:
            _settle_all(batch, DependencyUnavailable("postgresql", f"{self._name} batch interrupted"))
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the item that broke the batch
            if len(batch) == 1:
                _settle_all(batch, exc)
                return
            log.warning("batch write failed, retrying item by item", batch=self._name, error=repr(exc))
            for one in batch:
                await self._flush_batch([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _settle_all(batch: Sequence[tuple[object, asyncio.Future[ResultT]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
