-- issue 6: where a task came from, carried to the worker that runs it: the API request id
-- (logged by the worker) and the W3C traceparent of the submit span (the run span's parent).
ALTER TABLE tasks ADD COLUMN request_id text, ADD COLUMN traceparent text;
