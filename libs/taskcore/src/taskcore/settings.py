"""Process settings: every knob is a ``TASKFLOW_*`` environment variable."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from taskcore.flow import QUEUE_PATTERN

# asyncpg's own default of statement_cache_size.
DEFAULT_STATEMENT_CACHE_SIZE = 100


class Profile(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ApiKeyEntry(BaseModel):
    """One API key as configured: its name, the SHA-256 hex digest of the key (never the key), its scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Literal["tasks:read", "tasks:write", "admin"], ...] = Field(min_length=1)


class Settings(BaseSettings):
    """Built once at process start and passed down; taskcore never reads the environment."""

    # hide_input_in_errors: a bad URL with a password in it must not be echoed in the start-up error.
    model_config = SettingsConfigDict(env_prefix="TASKFLOW_", extra="ignore", frozen=True, hide_input_in_errors=True)

    # Process
    env: Profile = Profile.DEVELOPMENT
    task_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    builtin_tasks: bool = True

    # PostgreSQL and Redis
    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/taskflow", repr=False)
    # A session of its own, not through a transaction-pooling PgBouncer: the LISTEN connection, the reconciler's
    # leader lock and migrations. Unset: database_url (docs/operations.md#connection-budget).
    database_direct_url: str | None = Field(default=None, repr=False)
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    queue_name: str = Field(default="taskflow:queue", min_length=1)
    db_pool_max_size: int = Field(default=10, ge=1, le=200)
    db_command_timeout_seconds: float = Field(default=30.0, gt=0)
    # asyncpg's per-connection cache of named prepared statements. Unset: 0 (unnamed statements only) when
    # database_direct_url differs from database_url, i.e. database_url goes through a transaction-pooling PgBouncer,
    # which may hand the next query to another server connection; else asyncpg's 100.
    db_statement_cache_size: int | None = Field(default=None, ge=0, le=10_000)
    dependency_timeout_seconds: float = Field(default=2.0, gt=0)

    # API server
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64)
    # Plain single submits in flight together share one INSERT and one enqueue, this many at most; 0: one each.
    submit_group_max_size: int = Field(default=200, ge=0, le=5000)

    # API keys, submit rate limit, CORS
    auth_enabled: bool | None = None  # None: on unless env is development
    api_keys: tuple[ApiKeyEntry, ...] = Field(default=(), repr=False)
    submit_rate_per_second: float = Field(default=200.0, ge=0)  # per key; 0 turns the limit off
    submit_burst: int = Field(default=400, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Submit limits and defaults
    payload_limit_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    batch_body_limit_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    default_timeout_seconds: int = Field(default=300, ge=1)
    max_timeout_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    default_max_retries: int = Field(default=3, ge=0)
    max_retries_limit: int = Field(default=25, ge=0, le=1000)
    max_delay_seconds: int = Field(default=30 * 24 * 3600, ge=0)

    # Retries
    retry_backoff_base_seconds: float = Field(default=2.0, gt=0)
    retry_backoff_max_seconds: float = Field(default=600.0, gt=0)

    # Worker
    # The queues a worker consumes, with weights: "critical:3,default:1" (a missing weight is 1).
    worker_queues: Annotated[tuple[tuple[str, int], ...], NoDecode] = (("default", 1),)
    worker_concurrency: int = Field(default=50, ge=1, le=10_000)
    worker_poll_delay_seconds: float = Field(default=0.05, gt=0, le=10)
    worker_shutdown_grace_seconds: int = Field(default=25, ge=0)
    worker_id: str | None = None
    worker_batch_max_size: int = Field(default=200, ge=1, le=5000)
    worker_batch_linger_seconds: float = Field(default=0.01, ge=0, le=1)
    outage_tolerance_seconds: float = Field(default=60.0, ge=0)

    # Flow control: admission of tasks under limit keys or in paused queues (docs/flow-control.md)
    # Per queue, twice the concurrency of its live workers may wait admitted for a worker (this many
    # while no worker of the queue is seen): the rest wait in PostgreSQL, in fair order.
    admission_window: int = Field(default=100, ge=1, le=100_000)
    admission_interval_seconds: float = Field(default=0.2, gt=0, le=60)

    # Schedules (docs/schedules.md): the schedule leader (one worker) looks for due slots this often,
    # so a slot fires within about this long of its time; 0 turns firing off in this process.
    schedule_interval_seconds: float = Field(default=0.5, ge=0, le=60)

    # Leases, reconciler, retention
    lease_seconds: float = Field(default=30.0, ge=1)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    reconcile_batch_size: int = Field(default=1000, ge=1, le=100_000)
    enqueue_grace_seconds: float = Field(default=10.0, ge=0)
    retention_days: float = Field(default=7.0, gt=0)
    # The reconciler's purge: full batches of reconcile_batch_size, each followed by a pause as long as it
    # took, for up to this many seconds of each pass (0: one batch per pass, at most batch / interval rows
    # a second: 200/s at the defaults, a fifth of 1,000 tasks/s); docs/operations.md#retention-at-volume.
    retention_purge_seconds: float = Field(default=2.0, ge=0, le=60)

    # Bulk actions (POST /api/v1/bulk): tasks acted on per transaction, and a pause between chunks
    # so that a bulk retry of a million tasks does not crowd out the workers' own writes.
    bulk_chunk_size: int = Field(default=500, ge=1, le=10_000)
    bulk_chunk_pause_seconds: float = Field(default=0.0, ge=0, le=60)

    # Callbacks (docs/callbacks.md): a task's callback_url is POSTed the task JSON when it ends, signed
    # with webhook_secret (unset: a submit with callback_url is refused). Private, loopback and link-local
    # addresses are refused unless webhook_allow_private.
    webhook_secret: SecretStr | None = Field(default=None, repr=False)
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_give_up_seconds: float = Field(default=86400.0, gt=0, le=30 * 86400)
    webhook_backoff_base_seconds: float = Field(default=10.0, gt=0, le=3600)
    webhook_concurrency: int = Field(default=16, ge=0, le=1000)  # per worker; 0: this worker sends none
    webhook_poll_interval_seconds: float = Field(default=0.25, gt=0, le=10)

    # Logs, metrics, traces
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)  # 0: no metrics endpoint
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes the pod from outside
    metrics_refresh_seconds: float = Field(default=5.0, gt=0)
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("task_modules", "cors_origins", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _parse_queues(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parsed: list[tuple[str, int]] = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            name, _, weight = part.partition(":")
            if not re.fullmatch(QUEUE_PATTERN, name):
                raise ValueError(f"queue {name!r} must match {QUEUE_PATTERN}")
            if weight and not (weight.isdigit() and int(weight) >= 1):
                raise ValueError(f"the weight of queue {name!r} must be a whole number of at least 1")
            parsed.append((name, int(weight or 1)))
        if not parsed:
            raise ValueError("name at least one queue")
        if len({n for n, _ in parsed}) != len(parsed):
            raise ValueError("each queue once")
        return tuple(parsed)

    @field_validator("database_url", "database_direct_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):  # "" leaves the direct URL unset
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.default_timeout_seconds > self.max_timeout_seconds:
            raise ValueError("default_timeout_seconds must not exceed max_timeout_seconds")
        if self.default_max_retries > self.max_retries_limit:
            raise ValueError("default_max_retries must not exceed max_retries_limit")
        names = [key.name for key in self.api_keys]
        if len(set(names)) != len(names):
            raise ValueError("api_keys: every key needs a name of its own")
        return self

    @property
    def auth_required(self) -> bool:
        """Whether /api/v1 callers must present a key: TASKFLOW_AUTH_ENABLED, else on outside development."""
        return self.env is not Profile.DEVELOPMENT if self.auth_enabled is None else self.auth_enabled

    @property
    def direct_database_url(self) -> str:
        """Where a session of TaskFlow's own is needed (LISTEN, the leader lock, migrations)."""
        return self.database_direct_url or self.database_url

    @property
    def pooled(self) -> bool:
        """Whether database_url is taken to go through a pooler: a separate direct URL is configured."""
        return self.direct_database_url != self.database_url

    @property
    def statement_cache_size(self) -> int:
        if self.db_statement_cache_size is not None:
            return self.db_statement_cache_size
        return 0 if self.pooled else DEFAULT_STATEMENT_CACHE_SIZE

    @property
    def lease_renew_interval(self) -> float:
        """Heartbeats renew a lease three times per lease period."""
        return self.lease_seconds / 3
