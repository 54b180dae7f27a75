"""The asyncpg pool and the translation of connection failures into DependencyUnavailable."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import orjson

from taskcore.errors import DependencyUnavailable, outage_reason, unavailable_on
from taskcore.settings import Settings

# Settings PostgreSQL refuses: they surface when a connection opens (in a pool, at acquire), or, for a
# database never migrated, at the first query. Not outages, but the same to a caller: nothing can be
# stored until someone fixes them, so they are DependencyUnavailable too, with a hint.
CONFIG_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidCatalogNameError,  # database "x" does not exist
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, no pg_hba.conf entry
    asyncpg.UndefinedTableError,  # relation "tasks" does not exist: migrations never ran
)
# Failures that mean "PostgreSQL is not there right now" (or not usable with these settings), as
# opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    *CONFIG_ERRORS,
)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(reason, hint) for one of CONNECTION_ERRORS."""
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return str(exc), "run taskflow-migrate, which creates it"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return str(exc), "check the user and password in TASKFLOW_DATABASE_URL"
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"the database has no TaskFlow tables: {exc}", "run taskflow-migrate"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return str(exc) or type(exc).__name__, ""  # the server's words: "the database system is starting up"
    return outage_reason(exc), ""


def unavailable(exc: BaseException) -> DependencyUnavailable:
    """The DependencyUnavailable for one of CONNECTION_ERRORS caught outside translate_errors."""
    reason, hint = describe_error(exc)
    return DependencyUnavailable("postgresql", reason, hint=hint)


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog", format="text"
        )


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """TaskFlow keeps no session state (no LISTEN, SET or session-level advisory lock; the
    leader lock is transaction-scoped), so a released connection needs no RESET ALL: that
    would be one more round trip per query. asyncpg still rolls back an open transaction."""


async def create_pool(
    dsn: str, *, max_size: int = 10, command_timeout: float = 30.0, connect_timeout: float = 5.0
) -> asyncpg.Pool:
    """A pool that connects on demand (min_size 0), so a process starts, and reports not ready,
    while PostgreSQL is down; connection failures surface per query through translate_errors."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        command_timeout=command_timeout,
        timeout=connect_timeout,
        init=_init_connection,
        reset=_no_session_reset,
    )
    return pool


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """The pool a TaskFlow process uses, sized and timed by its settings."""
    return await create_pool(
        settings.database_url,
        max_size=settings.db_pool_max_size,
        command_timeout=settings.db_command_timeout_seconds,
        connect_timeout=settings.dependency_timeout_seconds,
    )


def translate_errors() -> AbstractAsyncContextManager[None]:
    """PostgreSQL connection failures inside the block become DependencyUnavailable("postgresql")."""
    return unavailable_on("postgresql", CONNECTION_ERRORS, describe_error)
