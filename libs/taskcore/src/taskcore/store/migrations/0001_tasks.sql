-- Tasks: the durable source of truth for every task's state, attempts and result.
CREATE TABLE tasks (
    id                uuid        PRIMARY KEY,
    task_type         text        NOT NULL,
    payload           jsonb       NOT NULL,
    status            text        NOT NULL CHECK (status IN ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority          smallint    NOT NULL DEFAULT 0,
    attempt           integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_retries       integer     NOT NULL CHECK (max_retries >= 0),
    timeout_seconds   integer     NOT NULL CHECK (timeout_seconds > 0),
    idempotency_key   text        UNIQUE,
    request_hash      text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    run_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at        timestamptz,
    finished_at       timestamptz,
    lease_expires_at  timestamptz,
    worker_id         text,
    cancel_requested  boolean     NOT NULL DEFAULT false,
    result            jsonb,
    error             jsonb
);

-- Keyset pagination, newest first, with and without the list filters.
CREATE INDEX tasks_created_idx        ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_status_created_idx ON tasks (status, created_at DESC, id DESC);
CREATE INDEX tasks_type_created_idx   ON tasks (task_type, created_at DESC, id DESC);
-- The reconciler: waiting tasks by due time, running tasks by lease, finished tasks by age.
CREATE INDEX tasks_waiting_idx  ON tasks (run_at) WHERE status IN ('queued', 'scheduled');
CREATE INDEX tasks_waiting_id_idx ON tasks (id) WHERE status IN ('queued', 'scheduled');
CREATE INDEX tasks_running_idx  ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_finished_idx ON tasks (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- Workers announce themselves here; /api/v1/queue counts the ones seen recently.
CREATE TABLE workers (
    id           text        PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
