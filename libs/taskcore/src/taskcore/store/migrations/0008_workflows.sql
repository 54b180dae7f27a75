-- Workflows: tasks that wait for other tasks (a DAG of steps), in the new status 'blocked'.
--
-- A dependency is an edge child -> parent in task_dependencies (the reverse index: a parent's
-- children), mirrored on the child as depends_on (its parents, read with the task at claim).
-- waiting_on counts the parents that have not succeeded: each parent's success decrements its
-- children's counter, so two parents finishing at once serialise on the child's row and exactly
-- one of them sees it reach 0 and moves it blocked -> queued (no read-then-write).
-- has_children lets a finishing task without children skip every dependency statement: plain
-- tasks pay one returned boolean, nothing else.
-- No foreign keys: a check per inserted task would cost every plain submit, and one to tasks would
-- make `TRUNCATE tasks` fail; retention deletes a purged task's edges with it (purge_finished).
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('blocked', 'scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled'));

CREATE TABLE workflows (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX workflows_created_idx ON workflows (created_at DESC, id DESC);

ALTER TABLE tasks
    ADD COLUMN workflow_id  uuid,
    ADD COLUMN step_ref     text,
    ADD COLUMN depends_on   uuid[]  NOT NULL DEFAULT '{}',
    ADD COLUMN waiting_on   integer NOT NULL DEFAULT 0 CHECK (waiting_on >= 0),
    ADD COLUMN has_children boolean NOT NULL DEFAULT false;

CREATE INDEX tasks_workflow_created_idx ON tasks (workflow_id, created_at DESC, id DESC)
    WHERE workflow_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_workflow_ref_idx ON tasks (workflow_id, step_ref) WHERE workflow_id IS NOT NULL;

CREATE TABLE task_dependencies (
    task_id   uuid NOT NULL,
    parent_id uuid NOT NULL,
    PRIMARY KEY (task_id, parent_id)
);
CREATE INDEX task_dependencies_parent_idx ON task_dependencies (parent_id);
