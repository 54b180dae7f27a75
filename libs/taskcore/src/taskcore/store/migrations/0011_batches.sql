-- issue 14: batches (a batch submit's tasks as one unit with counts) and their on_complete task.
--
-- Every task a batch submit stores carries its batch_id (counts: GROUP BY over
-- tasks_batch_created_idx). For a batch with an on_complete task, its tasks also carry
-- batch_counted, and the batch row counts those that are not terminal (`remaining`): a trigger
-- moves it on each terminal transition (-1) and on each way back (+1, a retry);
-- the UPDATE of the batch row serialises concurrent finishes on that row, so whichever takes the
-- counter to 0 is the one that fires on_complete — once: `fired_at` is set in the same statement
-- and the callback task is unique per batch (tasks_completes_batch_idx). A retry after that makes
-- the batch unfinished again but never fires on_complete a second time.
-- Tasks without a batch, and those of a batch without on_complete, pay the trigger's WHEN clause
-- only (no function call).
CREATE TABLE batches (
    id                  uuid        PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    total               integer     NOT NULL DEFAULT 0 CHECK (total >= 0),
    remaining           integer     NOT NULL DEFAULT 0 CHECK (remaining >= 0),  -- with on_complete only
    finished_at         timestamptz,          -- with on_complete: when every task was last terminal
    on_complete         jsonb,                -- the callback task as submitted, defaults applied
    on_complete_task_id uuid,                 -- its id, chosen at submit (the task exists once fired)
    fired_at            timestamptz,          -- when on_complete was stored
    idempotency_key     text        UNIQUE,   -- the batch request's Idempotency-Key
    request_hash        text,
    answer              text                  -- the first answer, replayed for the same key
);
CREATE INDEX batches_created_idx ON batches (created_at DESC, id DESC);

ALTER TABLE tasks
    ADD COLUMN batch_id        uuid,                           -- the batch that stored it
    ADD COLUMN batch_counted   boolean NOT NULL DEFAULT false, -- ... and that batch has an on_complete
    ADD COLUMN completes_batch uuid;                           -- it is that batch's on_complete task (ctx.batch)

CREATE INDEX tasks_batch_created_idx ON tasks (batch_id, created_at DESC, id DESC) WHERE batch_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_completes_batch_idx ON tasks (completes_batch) WHERE completes_batch IS NOT NULL;

-- Store the on_complete task of batch `b` unless it was stored already (called with the batch row
-- locked: by the trigger below, or by the batch submit when nothing of the batch was stored).
CREATE FUNCTION taskflow_batch_fire(b batches) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    spec jsonb := b.on_complete;
BEGIN
    IF spec IS NULL OR b.fired_at IS NOT NULL THEN
        RETURN;
    END IF;
    INSERT INTO tasks (id, task_type, payload, status, priority, max_retries, timeout_seconds,
                       run_at, created_at, updated_at, queue, limit_keys, admitted, completes_batch)
    SELECT b.on_complete_task_id, spec->>'task_type', spec->'payload', 'queued',
           (spec->>'priority')::smallint, (spec->>'max_retries')::int, (spec->>'timeout_seconds')::int,
           clock_timestamp(), clock_timestamp(), clock_timestamp(), spec->>'queue', '{}',
           NOT EXISTS (SELECT 1 FROM pauses p WHERE (p.kind = 'queue' AND p.name = spec->>'queue')
                                               OR (p.kind = 'task_type' AND p.name = spec->>'task_type')),
           b.id
    ON CONFLICT DO NOTHING;
    UPDATE batches SET fired_at = clock_timestamp() WHERE id = b.id;
END;
$$;

CREATE FUNCTION taskflow_batch_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended boolean := NEW.status IN ('succeeded', 'failed', 'cancelled');
    b batches;
BEGIN
    UPDATE batches
       SET remaining = remaining + CASE WHEN ended THEN -1 ELSE 1 END,
           finished_at = CASE WHEN ended AND remaining = 1 THEN clock_timestamp() END
     WHERE id = NEW.batch_id
    RETURNING * INTO b;
    IF ended AND b.remaining = 0 THEN
        PERFORM taskflow_batch_fire(b);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_batch_count
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (NEW.batch_counted
          AND (OLD.status IN ('succeeded', 'failed', 'cancelled')) <> (NEW.status IN ('succeeded', 'failed', 'cancelled')))
    EXECUTE FUNCTION taskflow_batch_count();
