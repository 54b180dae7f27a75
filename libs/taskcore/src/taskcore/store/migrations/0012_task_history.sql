-- issue 15: the history of every task, one row per transition (GET /api/v1/tasks/{id}/history).
--
-- Written by triggers, in the transaction of the statement that made the transition, so no path
-- can forget it. They are STATEMENT-level with transition tables: a statement that moves N tasks
-- (a grouped finish, a claim batch, a bulk chunk) costs one multi-row INSERT, not N. (PostgreSQL
-- does not allow a column list, UPDATE OF status, on a trigger with transition tables: the UPDATE
-- trigger runs for every UPDATE of tasks and keeps only the rows whose status changed.)
--
-- Who made the transition comes from the row itself: every statement that sets tasks.status sets
-- tasks.actor in the same SET ('api:<key>', 'worker:<id>', 'reconciler', 'schedule:<name>',
-- 'bulk:<id>', 'workflow', 'admitter', 'dashboard:<key>'), optionally followed by a newline and a
-- JSON object of details ('workflow' || E'\n' || '{"parent": "..."}'). No GUC, no extra round trip.
-- The error of a failed attempt (type, message), a retry's due time and an UpstreamFailed
-- cancel's upstream task are added to the detail from the row.
ALTER TABLE tasks ADD COLUMN actor text;

-- No foreign key (a check per transition, and TRUNCATE tasks would fail); retention deletes a
-- purged task's history with it (repository.purge_finished).
CREATE TABLE task_history (
    task_id     uuid        NOT NULL,
    at          timestamptz NOT NULL,
    from_status text,                  -- NULL: the task was created
    to_status   text        NOT NULL,
    attempt     integer     NOT NULL,
    actor       text,
    detail      jsonb
);
CREATE INDEX task_history_task_at_idx ON task_history (task_id, at);

-- The detail of one transition: what the actor wrote after its newline, plus what the row tells.
CREATE FUNCTION taskflow_history_detail(actor text, from_status text, to_status text, error jsonb,
                                        run_at timestamptz) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT NULLIF(
        CASE WHEN strpos(actor, E'\n') > 0 THEN substr(actor, strpos(actor, E'\n') + 1)::jsonb ELSE '{}' END
        || CASE
            WHEN error IS NULL THEN '{}'
            WHEN from_status = 'running' AND to_status = 'scheduled' THEN jsonb_build_object(
                'error_type', error->>'type', 'message', left(error->>'message', 200), 'retry_at', run_at)
            WHEN from_status = 'running' AND to_status = 'failed' THEN jsonb_build_object(
                'error_type', error->>'type', 'message', left(error->>'message', 200))
            WHEN to_status = 'cancelled' AND error->>'type' = 'UpstreamFailed' THEN jsonb_strip_nulls(jsonb_build_object(
                'error_type', error->>'type', 'upstream_task_id', error->>'upstream_task_id',
                'upstream_ref', error->>'upstream_ref'))
            ELSE '{}' END,
        '{}')
$$;

CREATE FUNCTION taskflow_history_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_history (task_id, at, from_status, to_status, attempt, actor, detail)
    -- a batch's on_complete task is stored by the batch's trigger (0011), which names no actor
    SELECT n.id, clock_timestamp(), NULL, n.status, n.attempt,
           COALESCE(split_part(n.actor, E'\n', 1), 'batch:' || n.completes_batch),
           CASE WHEN n.error IS NOT NULL OR strpos(n.actor, E'\n') > 0
                THEN taskflow_history_detail(n.actor, NULL, n.status, n.error, n.run_at) END
      FROM new_rows n;
    RETURN NULL;
END;
$$;

CREATE FUNCTION taskflow_history_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_history (task_id, at, from_status, to_status, attempt, actor, detail)
    SELECT n.id, clock_timestamp(), o.status, n.status, n.attempt, split_part(n.actor, E'\n', 1),
           CASE WHEN n.error IS NOT NULL OR strpos(n.actor, E'\n') > 0
                THEN taskflow_history_detail(n.actor, o.status, n.status, n.error, n.run_at) END
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE o.status IS DISTINCT FROM n.status;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_history_insert
    AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskflow_history_insert();

CREATE TRIGGER tasks_history_update
    AFTER UPDATE ON tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskflow_history_update();
