"""One look at PostgreSQL and Redis before the worker starts, so that a wrong setting is said at once,
in one line per dependency naming it and why, instead of only as retries and failed loops later.

It never stops the worker: a dependency that does not answer is waited for as in an outage (arq retries
Redis for about ``outage_tolerance_seconds``, the loops retry PostgreSQL for as long as it takes), so a
worker started before its database is created or its password is fixed carries on once it is.
"""

from __future__ import annotations

import asyncio

import structlog

from taskcore.errors import DependencyUnavailable
from taskcore.queue import TaskQueue, connect
from taskcore.settings import Settings
from taskcore.store import TaskRepository, create_pool

log = structlog.get_logger("taskflow.worker")


async def check_dependencies(settings: Settings) -> dict[str, str]:
    """Ping both; log one line for each that does not answer; return {dependency: why} for those."""
    timeout = settings.dependency_timeout_seconds
    pool = await create_pool(settings.database_url, max_size=1, connect_timeout=timeout)
    queue = TaskQueue(connect(settings.redis_url, queue_name=settings.queue_name, timeout=timeout))
    down: dict[str, str] = {}
    try:
        for name, probe in (("postgresql", TaskRepository(pool).ping), ("redis", queue.ping)):
            try:
                await asyncio.wait_for(probe(), timeout * 2)
            except DependencyUnavailable as exc:
                down[name] = exc.why
            except TimeoutError:
                down[name] = f"no answer within {timeout * 2:g} s"
    finally:
        await queue.close()
        await pool.close()
    for name, why in down.items():
        log.error(f"worker starting without {name}: {why}; waiting for it as for an outage", dependency=name)
    return down
