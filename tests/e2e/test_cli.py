"""The `taskflow` command as a subprocess against the real API and worker: output and exit codes.

Each invocation is a new Python process (about a second or two here), so setup and cleanup go
through taskflow_client in-process and the command runs only for what is being checked."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskflow_client import Client, TaskStatus
from tests.e2e.conftest import BIN, CLOSED_PORT, Stack

pytestmark = pytest.mark.e2e

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def api_key(stack: Stack) -> str | None:
    return stack.headers.get("Authorization", "").removeprefix("Bearer ") or None


def run(stack: Stack, *args: str, url: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")}
    env["TASKFLOW_URL"] = url or stack.url
    env["COLUMNS"] = "200"
    key = api_key(stack)
    if key:
        env["TASKFLOW_API_KEY"] = key
    return subprocess.run(
        [str(BIN / "taskflow"), *args], env=env, capture_output=True, text=True, timeout=90, input=stdin, check=False
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.url, api_key=api_key(stack)) as tf:
        yield tf


def test_submit_wait_prints_the_result(stack: Stack) -> None:
    task = as_json(run(stack, "--json", "submit", "test", "--payload", '{"message": "cli"}', "--wait"))
    assert task["status"] == "succeeded"
    assert task["result"]["echo"] == {"message": "cli"}
    shown = run(stack, "get", task["id"])
    assert shown.returncode == 0
    assert "succeeded" in shown.stdout
    assert task["id"] in shown.stdout


def test_payload_from_a_file(stack: Stack, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text('{"message": "from a file"}')
    task = as_json(run(stack, "--json", "submit", "test", "--payload", f"@{path}", "--priority", "5"))
    assert task["payload"] == {"message": "from a file"}
    assert task["priority"] == 5
    assert client.get(task["id"]).payload == {"message": "from a file"}


def test_a_failed_task_exits_1_with_wait(stack: Stack) -> None:
    result = run(stack, "--json", "submit", "fail", "--payload", '{"times": -1}', "--max-retries", "0", "--wait")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["status"] == "failed"


def test_wait_timeout_cancel_conflict_and_retry(stack: Stack, client: Client) -> None:
    result = run(stack, "--json", "submit", "sleep", "-p", '{"seconds": 30}', "--wait", "--wait-timeout", "1")
    assert result.returncode == 7, result.stderr
    task_id = json.loads(result.stdout)["id"]
    try:
        assert as_json(run(stack, "--json", "cancel", task_id))["cancel_requested"] is True
        assert client.wait(task_id, timeout=30).status is TaskStatus.CANCELLED
        assert run(stack, "cancel", task_id).returncode == 6  # already terminal: conflict
        assert as_json(run(stack, "--json", "retry", task_id))["status"] == "queued"
    finally:
        if not client.get(task_id).terminal:
            client.cancel(task_id)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["submit", "test", "--payload", "{not json"], 2),
        (["get", "not-a-uuid"], 2),
        (["get", UNKNOWN], 3),
    ],
)
def test_exit_codes(stack: Stack, args: list[str], code: int) -> None:
    result = run(stack, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.strip(), "an error says why on stderr"


def test_refused_input_exits_2_naming_the_field(stack: Stack) -> None:
    result = run(stack, "--json", "submit", "sleep", "--payload", '{"seconds": -1}')
    assert result.returncode == 2
    problem = json.loads(result.stderr)
    assert problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == ["payload.seconds"]


def test_a_wrong_api_key_exits_4(stack: Stack) -> None:
    if api_key(stack) is None:
        pytest.fail("the e2e stack runs with auth on: it should carry an API key")
    result = run(stack, "--api-key", "not-a-key", "types")
    assert result.returncode == 4, result.stderr
    assert "401" in result.stderr


def test_list_filters(stack: Stack, client: Client) -> None:
    for i in range(3):
        client.submit("test", {"message": f"list {i}"}, wait=True, wait_timeout=30)
    page = as_json(run(stack, "--json", "list", "--status", "succeeded", "--type", "test", "--limit", "2"))
    assert len(page["items"]) == 2
    assert {t["status"] for t in page["items"]} == {"succeeded"}
    assert {t["task_type"] for t in page["items"]} == {"test"}
    assert page["next_cursor"]
    following = client.list(status="succeeded", task_type="test", limit=2, cursor=page["next_cursor"])
    assert not {str(t.id) for t in following.items} & {t["id"] for t in page["items"]}


def test_types_and_queue(stack: Stack) -> None:
    types = {t["name"]: t for t in as_json(run(stack, "--json", "types"))}
    assert {"test", "sleep", "fail", "cpu"} <= set(types)
    assert "seconds" in types["sleep"]["payload_schema"]["properties"]
    shown = run(stack, "queue")
    assert shown.returncode == 0
    assert "workers" in shown.stdout


def test_watch(stack: Stack, client: Client) -> None:
    task = client.submit("greet", {"name": "watch"})
    result = run(stack, "--json", "watch", "--type", "greet", "--until-terminal", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    snapshots = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert snapshots[-1][0]["id"] == str(task.id)
    assert all(t["status"] in {"succeeded", "failed", "cancelled"} for t in snapshots[-1])
    table = run(stack, "watch", "--count", "2", "--interval", "0.1", "--limit", "3")
    assert table.returncode == 0
    assert "newest tasks" in table.stdout


def test_unreachable_api_exits_5(stack: Stack) -> None:
    result = run(stack, "--retries", "0", "queue", url=f"http://127.0.0.1:{CLOSED_PORT}")
    assert result.returncode == 5
    assert "error" in result.stderr


def test_global_options_work_after_the_command_too(stack: Stack) -> None:
    task = as_json(run(stack, "submit", "test", "--wait", "--json", "--payload", '{"message": "after"}'))
    assert task["status"] == "succeeded"
    assert task["result"]["echo"] == {"message": "after"}
    assert as_json(run(stack, "get", task["id"], "--json"))["id"] == task["id"]
    assert as_json(run(stack, "list", "--limit", "1", "--json"))["items"]
    # After the command wins over before it and over the environment (TASKFLOW_URL, TASKFLOW_API_KEY).
    closed = f"http://127.0.0.1:{CLOSED_PORT}"
    assert run(stack, "--url", stack.url, "queue", "--url", closed, "--retries", "0").returncode == 5
    assert run(stack, "--url", closed, "--retries", "0", "queue", "--url", stack.url).returncode == 0
    wrong_key = run(stack, "types", "--api-key", "not-a-key", "--json")
    assert wrong_key.returncode == 4, wrong_key.stderr
    assert json.loads(wrong_key.stderr)["status"] == 401
    # Each command's --help lists them.
    shown = run(stack, "submit", "--help")
    assert shown.returncode == 0
    assert "Global options" in shown.stdout
    for option in ("--json", "--url", "--api-key", "--timeout", "--retries"):
        assert option in shown.stdout


def test_a_bad_global_option_value_after_the_command_is_refused(stack: Stack) -> None:
    result = run(stack, "queue", "--timeout", "0")
    assert result.returncode == 2
    assert "--timeout" in result.stderr


def test_queues_pause_resume_and_submit_to_a_queue_with_limit_keys(stack: Stack, client: Client) -> None:
    queue = f"cli-{os.getpid()}"
    sent = as_json(run(stack, "submit", "test", "-p", "{}", "--queue", queue, "-k", "tenant:7", "-k", "smtp", "--json"))
    assert (sent["queue"], sent["limit_keys"]) == (queue, ["tenant:7", "smtp"])
    shown = run(stack, "get", sent["id"])
    assert "tenant:7, smtp" in shown.stdout
    assert queue in shown.stdout
    listed = {q["name"]: q for q in as_json(run(stack, "queues", "--json"))}
    assert (listed[queue]["due"], listed[queue]["workers"]) == (1, 0)  # the stack's worker consumes default only
    table = run(stack, "queues")
    assert table.returncode == 0
    assert "no live worker consumes" in table.stdout  # the stranded queue is flagged
    assert as_json(run(stack, "--json", "list", "--queue", queue))["items"][0]["id"] == sent["id"]
    try:
        assert as_json(run(stack, "queue", "pause", queue, "--json"))["paused"] is True
        assert "paused" in run(stack, "queue", "show", queue).stdout
    finally:
        resumed = as_json(run(stack, "--json", "queue", "resume", queue))
    assert resumed["paused"] is False
    client.cancel(sent["id"])
    assert run(stack, "queue", "show", "no-such-queue").returncode == 3
    assert run(stack, "queue", "show", "Bad Name").returncode == 2
    assert "workers" in run(stack, "queue").stdout  # without a command: the aggregate, as before


def test_task_type_pause_and_resume(stack: Stack) -> None:
    try:
        assert as_json(run(stack, "--json", "task-type", "pause", "greet")) == {"name": "greet", "paused": True}
    finally:
        resumed = run(stack, "task-type", "resume", "greet")
    assert resumed.returncode == 0, resumed.stderr
    assert "greet: resumed" in resumed.stdout
    assert run(stack, "task-type", "pause", "no.such.type").returncode == 3


def test_limits_set_show_list_delete(stack: Stack) -> None:
    key = f"cli-tenant-{os.getpid()}:*"
    created = as_json(run(stack, "limits", "set", key, "--max-running", "2", "--json"))
    assert (created["key"], created["template"], created["max_running"]) == (key, True, 2)
    try:
        rate = as_json(run(stack, "--json", "limits", "set", key, "--per-second", "5", "--burst", "10"))
        assert (rate["max_running"], rate["per_second"], rate["burst"]) == (None, 5, 10)
        assert key in {item["key"] for item in as_json(run(stack, "--json", "limits"))}
        table = run(stack, "limits")
        assert key in table.stdout
        assert "5/s burst 10" in table.stdout
        assert "template" in run(stack, "limits", "show", key).stdout
        refused = run(stack, "--json", "limits", "set", key, "--burst", "3")
        assert refused.returncode == 2
        assert "burst" in [e["field"] for e in json.loads(refused.stderr)["errors"]]
        assert run(stack, "limits", "set", key, "--max-running", "0").returncode == 2
    finally:
        deleted = run(stack, "limits", "delete", key)
    assert deleted.returncode == 0, deleted.stderr
    assert run(stack, "limits", "show", key).returncode == 3
    assert run(stack, "limits", "delete", key).returncode == 3
