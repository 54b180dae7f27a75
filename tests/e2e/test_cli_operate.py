"""`taskflow get --watch` and `taskflow bulk ...` as subprocesses against the real API and worker."""

from __future__ import annotations

import json
import uuid

import pytest

from taskflow_client import Client
from tests.e2e.conftest import Stack
from tests.e2e.test_cli import api_key, run

pytestmark = pytest.mark.e2e


def test_get_watch_follows_status_and_progress_until_done(stack: Stack) -> None:
    with Client(stack.url, api_key=api_key(stack)) as tf:
        task = tf.submit("e2e.progress", {"steps": 3, "interval": 1.1})
    watched = run(stack, "get", str(task.id), "--watch")
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.strip().splitlines()
    assert lines[-1].startswith("succeeded"), lines
    assert any("%" in line and "resized" in line for line in lines), lines
    as_json = run(stack, "get", str(task.id), "--watch", "--json")  # finished: one document
    assert json.loads(as_json.stdout.strip().splitlines()[-1])["status"] == "succeeded"


def test_get_watch_of_a_failing_task_exits_1(stack: Stack) -> None:
    with Client(stack.url, api_key=api_key(stack)) as tf:
        task = tf.submit("fail", {"times": -1}, max_retries=0)
    assert run(stack, "get", str(task.id), "--watch").returncode == 1


def test_bulk_dry_run_retry_and_get(stack: Stack) -> None:
    mark = f"cli-{uuid.uuid4().hex}"
    with Client(stack.url, api_key=api_key(stack)) as tf:
        ids = [tf.submit("fail", {"times": -1, "message": mark}, max_retries=0).id for _ in range(3)]
        for task_id in ids:
            tf.wait(task_id, timeout=20)
    payload = json.dumps({"message": mark})
    dry = run(stack, "bulk", "retry", "--status", "failed", "--type", "fail", "--payload", payload, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would act on 3 tasks" in dry.stdout
    counted = run(stack, "bulk", "retry", "--type", "fail", "--payload", payload, "--dry-run", "--json")
    assert json.loads(counted.stdout)["matched"] == 3
    done = run(stack, "bulk", "retry", "--type", "fail", "--payload", payload, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["status"], body["matched"], body["succeeded"]) == ("finished", 3, 3)
    shown = run(stack, "bulk", "get", body["id"])
    assert shown.returncode == 0
    assert "finished" in shown.stdout
    refused = run(stack, "bulk", "cancel", "--status", "failed", "--dry-run")
    assert refused.returncode == 2
    assert "filter.status" in refused.stderr
    assert run(stack, "bulk", "get", str(uuid.uuid4())).returncode == 3
