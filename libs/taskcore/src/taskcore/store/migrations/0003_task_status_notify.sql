-- Every status change is announced on channel 'taskflow_task_status' as '<id> <status>'
-- (about 50 bytes), so an API process can wake the requests waiting on that task
-- (GET /api/v1/tasks/{id}?wait=N and /events) instead of polling. The notification is
-- delivered at commit, only if the transaction commits.
CREATE FUNCTION taskflow_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskflow_task_status', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_status_notify
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION taskflow_notify_status();
