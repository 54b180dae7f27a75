-- Schedules (periodic tasks) and unique tasks. docs/schedules.md describes both.
--
-- A schedule is a task template fired by the schedule leader (one worker at a time, under an
-- advisory lock): each slot becomes one ordinary task carrying schedule_id and scheduled_for.
-- Exactly one task per slot is the unique index below, whatever the number of leaders: a slot is
-- inserted with ON CONFLICT DO NOTHING, never after a read.
CREATE TABLE schedules (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    cron          text,
    every_seconds integer     CHECK (every_seconds >= 1),
    timezone      text        NOT NULL DEFAULT 'UTC',
    task          jsonb       NOT NULL,  -- the resolved template: task_type, payload, queue, priority, ...
    overlap       text        NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'allow')),
    catch_up      text        NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('none', 'latest', 'all')),
    paused        boolean     NOT NULL DEFAULT false,
    next_run_at   timestamptz NOT NULL,  -- the earliest slot not yet fired (or skipped)
    last_slot_at  timestamptz,           -- the latest slot fired
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused;

-- A schedule's tasks keep schedule_id after the schedule is deleted (no foreign key: the history
-- stays readable, and an ordinary submit pays no check).
ALTER TABLE tasks
    ADD COLUMN schedule_id   uuid,
    ADD COLUMN scheduled_for timestamptz,
    ADD COLUMN unique_key    text;

-- Exactly one task per slot (also serves ?schedule_id= and the overlap check). Partial, so that
-- tasks without a schedule add nothing to it.
CREATE UNIQUE INDEX tasks_schedule_slot_key ON tasks (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL;

-- Unique tasks, rule one: at most one waiting or running task per unique_key.
CREATE UNIQUE INDEX tasks_unique_active_key ON tasks (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('scheduled', 'queued', 'running');

-- Unique tasks, rule two: the window. A key is held until `held_until` (created_at +
-- unique_for_seconds of the task that took it) even after that task finished; a submit takes the
-- key with INSERT ... ON CONFLICT DO UPDATE ... WHERE held_until <= now, which PostgreSQL decides
-- on the locked, latest row. Expired rows are dead weight only: the reconciler deletes them.
CREATE TABLE unique_keys (
    key        text        PRIMARY KEY,
    task_id    uuid        NOT NULL,
    held_until timestamptz NOT NULL
);
CREATE INDEX unique_keys_expiry_idx ON unique_keys (held_until);
