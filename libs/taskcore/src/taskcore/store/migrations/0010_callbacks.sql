-- Callbacks (issue 14): a task with callback_url is POSTed to it when it reaches a terminal state
-- (docs/callbacks.md). The delivery is an outbox row that a trigger writes in the transaction of the
-- state change itself, so no code path that ends a task (a worker's finish, a grouped finish, a
-- cancel, the reconciler, a bulk action, an UpstreamFailed cascade) can forget it, and one that
-- rolls back leaves none. A task without callback_url pays the trigger's WHEN test only.
ALTER TABLE tasks ADD COLUMN callback_url text;

-- One delivery per terminal state reached (a retried task that ends again gets another). `task` is
-- the task row as it was at that moment: the POST body is built from it, so a later retry of the
-- task does not change what "task.failed" says. Any worker's sender claims due rows with FOR UPDATE
-- SKIP LOCKED and takes a lease (lease_owner, lease_expires_at; next_attempt_at moves to the lease's
-- end with it), so a delivery whose worker died is claimed again by another once the lease ends.
-- No foreign key to tasks (as task_dependencies): retention deletes a purged task's deliveries.
CREATE TABLE deliveries (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id          uuid        NOT NULL,
    event            text        NOT NULL,  -- task.succeeded | task.failed | task.cancelled
    url              text        NOT NULL,
    task             jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at     timestamptz,
    finished_at      timestamptz  -- delivered or given up
);
CREATE INDEX deliveries_task_idx ON deliveries (task_id, created_at);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';

-- Every attempt made, with its outcome (an attempt cut short by a dying worker leaves no row: the
-- next attempt's number shows the gap).
CREATE TABLE delivery_attempts (
    delivery_id uuid        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    status_code integer,
    error       text,
    duration_ms double precision NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE FUNCTION taskflow_enqueue_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (task_id, event, url, task)
    VALUES (NEW.id, 'task.' || NEW.status, NEW.callback_url, to_jsonb(NEW) - 'request_hash');
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_callback_outbox
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (NEW.callback_url IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION taskflow_enqueue_delivery();

-- A task stored already terminal (a dependent submit whose parent had failed is stored cancelled).
CREATE TRIGGER tasks_callback_outbox_insert
    AFTER INSERT ON tasks
    FOR EACH ROW
    WHEN (NEW.callback_url IS NOT NULL AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION taskflow_enqueue_delivery();
