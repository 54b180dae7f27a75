-- Flow control: named queues, concurrency and rate limits per key, pauses.
--
-- A task is "admitted" once it may start: only admitted tasks are in Redis and only they can be
-- claimed. A task with no limit key in an unpaused queue and type is admitted as it is stored (the
-- fast path); any other waits, not admitted, until the admitter finds a free slot and token for
-- every key it names (taskcore/store/flow.py). A slot is the task row itself: an admitted task
-- that is queued or running holds one slot of each of its keys, so the transition that ends the
-- run (success, failure, retry, cancel, lease recovery) frees it and nothing can leak.
ALTER TABLE tasks
    ADD COLUMN queue      text    NOT NULL DEFAULT 'default',
    ADD COLUMN limit_keys text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN admitted   boolean NOT NULL DEFAULT true;

CREATE INDEX tasks_queue_created_idx ON tasks (queue, created_at DESC, id DESC);
-- Per-queue depth for /api/v1/queues and the scaler.
CREATE INDEX tasks_active_queue_idx ON tasks (queue, status) WHERE status IN ('scheduled', 'queued', 'running');
-- The admitter's backlog, by queue and first limit key (the fair-share key), best first.
CREATE INDEX tasks_unadmitted_idx ON tasks (queue, (COALESCE(limit_keys[1], '')), priority DESC, run_at, id)
    WHERE NOT admitted AND status IN ('scheduled', 'queued');
-- Slots in use: admitted tasks under a key that have not ended.
CREATE INDEX tasks_slots_idx ON tasks USING gin (limit_keys)
    WHERE admitted AND status IN ('queued', 'running') AND limit_keys <> '{}';
-- Admitted tasks under a key, in flight (queued for a worker or running), by queue and fair-share
-- key: the admitter keeps the unstarted ones bounded per queue (Redis holds only what starts soon)
-- and serves the groups with the fewest in flight first (fair share across admission rounds).
CREATE INDEX tasks_in_flight_idx ON tasks (queue, (COALESCE(limit_keys[1], '')))
    WHERE admitted AND status IN ('queued', 'running') AND limit_keys <> '{}';

-- A queue exists once a task or a worker names it.
CREATE TABLE queues (
    name       text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO queues (name) VALUES ('default');

-- A paused queue or task type accepts submits; none of its tasks is admitted until resumed.
CREATE TABLE pauses (
    kind      text        NOT NULL CHECK (kind IN ('queue', 'task_type')),
    name      text        NOT NULL,
    paused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- A limit on one key, or on every key with a prefix when the key ends in '*'.
CREATE TABLE limits (
    key         text             PRIMARY KEY,
    max_running integer          CHECK (max_running > 0),
    per_second  double precision CHECK (per_second > 0),
    burst       integer          CHECK (burst > 0),
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    CHECK (max_running IS NOT NULL OR per_second IS NOT NULL),
    CHECK (burst IS NULL OR per_second IS NOT NULL)
);

-- Rate limits: the GCRA "theoretical arrival time" of each concrete key (one row per key in use).
CREATE TABLE limit_rates (
    key text        PRIMARY KEY,
    tat timestamptz NOT NULL
);

ALTER TABLE workers ADD COLUMN queues text[] NOT NULL DEFAULT '{default}';
