"""Versioned SQL migrations, applied in order under an advisory lock (safe to run concurrently and to rerun)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from taskcore.errors import DependencyUnavailable
from taskcore.logging import configure_logging
from taskcore.settings import Settings
from taskcore.store._pool import CONNECTION_ERRORS, unavailable

log = structlog.get_logger("taskflow.migrate")

# Arbitrary constant: the key of the advisory lock that serialises concurrent migrators.
MIGRATION_LOCK_KEY = 0x7A5CF10


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    folder = resources.files("taskcore.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[Migration]:
    """Apply what is missing; return what was applied. Refuses edited migrations."""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in load_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise RuntimeError(
                        f"migration {migration.version}_{migration.name} was changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied.append(migration)
            log.info("migration applied", version=migration.version, name=migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` when it does not exist; True if created."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):  # another migrator won the race
        return False
    finally:
        await admin.close()
    log.info("database created", database=name)
    return True


async def migrate(dsn: str, *, create_database: bool = True) -> list[Migration]:
    try:
        if create_database:
            await ensure_database(dsn)
        conn = await asyncpg.connect(dsn)
    except CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taskflow-migrate", description="Apply TaskFlow's database migrations (TASKFLOW_DATABASE_URL)."
    )
    parser.add_argument("--no-create-database", action="store_true", help="fail instead of creating a missing database")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        applied = asyncio.run(migrate(settings.database_url, create_database=not args.no_create_database))
    except DependencyUnavailable as exc:
        log.error("migration failed", error=str(exc))
        return 2
    log.info("database up to date", applied=len(applied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
