-- issue 15: progress reported by running tasks, bulk actions, and a payload containment filter.

-- The last progress a handler reported ({fraction, message, data, at, attempt}); written at most
-- about once a second per task (taskcore/progress.py), only while the task runs. Not indexed, so
-- the write is a HOT update; nothing on the claim or finish path reads or writes it.
ALTER TABLE tasks ADD COLUMN progress jsonb;

-- A progress write wakes the watchers of that task only, on the channel and through the watches
-- of migration 0003 ('<id> progress'): an unwatched task's progress notifies nothing. The trigger
-- fires only for statements that set progress, so the workers' transitions never run it.
CREATE FUNCTION taskflow_notify_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM task_watches WHERE task_id = NEW.id) THEN
        PERFORM pg_notify('taskflow_task_status', NEW.id::text || ' progress');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_progress_notify
    AFTER UPDATE OF progress ON tasks
    FOR EACH ROW
    WHEN (OLD.progress IS DISTINCT FROM NEW.progress AND NEW.progress IS NOT NULL)
    EXECUTE FUNCTION taskflow_notify_progress();

-- The list filter payload @> '{...}' (dashboard and GET /api/v1/tasks?payload=): jsonb_path_ops
-- indexes only containment, about a third the size of the default GIN opclass
-- (docs/performance.md, "Payload filter"). IF NOT EXISTS: on a big table an operator builds it
-- first with CREATE INDEX CONCURRENTLY (this transaction would block writes while it builds).
CREATE INDEX IF NOT EXISTS tasks_payload_idx ON tasks USING gin (payload jsonb_path_ops);

-- A bulk retry or cancel: the filter as given, the tasks it matched (bulk_action_items, written
-- with it: `matched` is exactly what it acts on), and the outcome counts. Any worker may run it:
-- it takes the lease (owner, expires_at); one that dies mid-way leaves it to the next after the
-- lease expires. Each chunk's transitions and the items' outcomes commit together, so a task is
-- acted on once whatever crashes.
CREATE TABLE bulk_actions (
    id               uuid        PRIMARY KEY,
    action           text        NOT NULL CHECK (action IN ('retry', 'cancel')),
    filter           jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    matched          integer     NOT NULL DEFAULT 0,
    done             integer     NOT NULL DEFAULT 0,
    succeeded        integer     NOT NULL DEFAULT 0,
    skipped          integer     NOT NULL DEFAULT 0,
    failed           integer     NOT NULL DEFAULT 0,
    actor            text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    lease_owner      text,
    lease_expires_at timestamptz
);
CREATE INDEX bulk_actions_running_idx ON bulk_actions (created_at) WHERE status = 'running';

-- One row per matched task, with the state it was matched in: a task whose state changed since
-- (status, attempt or finish time) is skipped, not acted on. outcome NULL: not processed yet.
CREATE TABLE bulk_action_items (
    bulk_id     uuid        NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    task_id     uuid        NOT NULL,
    status      text        NOT NULL,
    attempt     integer     NOT NULL,
    finished_at timestamptz,
    outcome     text        CHECK (outcome IN ('succeeded', 'skipped', 'failed')),
    PRIMARY KEY (bulk_id, task_id)
);
CREATE INDEX bulk_action_items_pending_idx ON bulk_action_items (bulk_id, task_id) WHERE outcome IS NULL;
