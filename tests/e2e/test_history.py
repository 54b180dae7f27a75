"""A task's history over the real processes: through the client and the CLI, and across a worker
SIGKILLed mid-task (the reconciler's recovery is in it, without gaps)."""

from __future__ import annotations

import itertools
import json
import signal
import uuid
from typing import Any

import httpx
import pytest

from taskcore.domain import TRANSITIONS, TaskStatus
from taskflow_client import Client, Transition
from tests.e2e._helpers import TASKS, submit, wait_for_status, wait_until
from tests.e2e.conftest import Stack, reap
from tests.e2e.test_cli import api_key, run

pytestmark = pytest.mark.e2e


def assert_valid_path(history: list[dict[str, Any]]) -> None:
    """Each entry starts where the one before ended, by a transition of the state machine."""
    assert history[0]["from"] is None
    for before, after in itertools.pairwise(history):
        assert after["from"] == before["to"], history
        assert TaskStatus(after["to"]) in TRANSITIONS[TaskStatus(before["to"])], history


def test_the_client_and_the_cli_show_who_did_what(stack: Stack) -> None:
    with Client(stack.url, api_key=api_key(stack)) as tf:
        task = tf.submit("test", {"message": "history"}, wait=True, wait_timeout=30)
        history = tf.history(task.id)
    assert all(isinstance(t, Transition) for t in history)
    assert [(t.from_, t.to) for t in history] == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    assert history[0].actor == "api:test-suite"
    assert history[1].actor is not None
    assert history[1].actor.startswith("worker:")
    assert history[2].actor == history[1].actor

    table = run(stack, "history", str(task.id))
    assert table.returncode == 0, table.stderr
    assert "api:test-suite" in table.stdout
    assert "succeeded" in table.stdout
    as_json = run(stack, "history", str(task.id), "--json")  # the global option after the command
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert [(h["from"], h["to"]) for h in body] == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    assert run(stack, "history", str(uuid.uuid4())).returncode == 3
    assert run(stack, "history", "nope").returncode == 2


async def test_a_worker_killed_mid_task_leaves_the_recovery_in_the_history(isolated_stack: Stack) -> None:
    stack = isolated_stack
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=30) as api:
        first = stack.start_worker()
        created = await submit(api, "sleep", {"seconds": 2}, max_retries=3)
        await wait_for_status(api, created["id"], "running", within=30)
        first.send_signal(signal.SIGKILL)  # mid-task: its lease (3 s) is left to expire
        reap(first)
        stack.start_worker()
        await wait_for_status(api, created["id"], "succeeded", within=60)

        async def recorded() -> bool:
            return (await api.get(f"{TASKS}/{created['id']}/history")).json()[-1]["to"] == "succeeded"

        await wait_until(recorded, within=5, what="the success in the history")
        history = (await api.get(f"{TASKS}/{created['id']}/history")).json()
    assert_valid_path(history)
    moves = [(h["from"], h["to"], h["actor"]) for h in history]
    killed = moves[1][2]
    assert moves[0] == (None, "queued", "api:test-suite")
    assert moves[1][:2] == ("queued", "running")
    assert moves[2] == ("running", "scheduled", "reconciler"), moves
    assert history[2]["detail"]["worker"] == killed.removeprefix("worker:")
    assert moves[3][:2] == ("scheduled", "running")
    assert moves[3][2] != killed
    assert moves[-1][:2] == ("running", "succeeded")
    assert history[-1]["attempt"] == 2
