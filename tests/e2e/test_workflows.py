"""Workflows through the real processes: a diamond runs in order and its fan-in step sees both
parents' results; a failing step cancels what is downstream of it with UpstreamFailed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from taskflow_client import Client, TaskStatus
from tests.e2e._helpers import parse_time
from tests.e2e.conftest import Stack
from tests.e2e.test_cli import api_key, as_json, run

pytestmark = pytest.mark.e2e

WORKFLOWS = "/api/v1/workflows"


def step(ref: str, *depends_on: str, **payload: Any) -> dict[str, Any]:
    return {
        "ref": ref,
        "task_type": "e2e.step",
        "payload": {"name": ref, **payload},
        "depends_on": list(depends_on),
        "max_retries": 0,
    }


async def wait_workflow(api: httpx.AsyncClient, workflow_id: str, *, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await api.get(f"{WORKFLOWS}/{workflow_id}")).json()
        if body["status"] != "running":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {workflow_id} still running after {within}s: {body}")
        await asyncio.sleep(0.1)


def assert_ran_in_order(steps: dict[str, dict[str, Any]], tasks: dict[str, dict[str, Any]]) -> None:
    for ref, s in steps.items():
        for parent in s["depends_on"]:
            assert parse_time(tasks[ref]["started_at"]) >= parse_time(tasks[parent]["finished_at"]), (ref, parent)


async def test_a_diamond_runs_in_order_and_the_fan_in_sees_both_parents(
    api: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    body = {"name": "diamond", "tasks": [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]}
    response = await api.post(WORKFLOWS, json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    done = await wait_workflow(api, created["id"])
    assert done["status"] == "succeeded", done
    assert done["counts"]["succeeded"] == 4
    tasks = {ref: (await api.get(f"/api/v1/tasks/{tid}")).json() for ref, tid in created["tasks"].items()}
    assert_ran_in_order({s["ref"]: s for s in done["steps"]}, tasks)
    assert tasks["d"]["result"]["parents"] == {
        "b": {"name": "b", "parents": {"a": {"name": "a", "parents": {}}}},
        "c": {"name": "c", "parents": {"a": {"name": "a", "parents": {}}}},
    }


async def test_a_failing_step_cancels_its_descendants_with_upstream_failed(api: httpx.AsyncClient) -> None:
    body = {
        "name": "broken",
        "tasks": [step("a"), step("b", "a", fail=True), step("c", "a"), step("d", "b", "c"), step("e", "d")],
    }
    created = (await api.post(WORKFLOWS, json=body)).json()
    done = await wait_workflow(api, created["id"])
    assert done["status"] == "failed", done
    steps = {s["ref"]: s for s in done["steps"]}
    assert [steps[r]["status"] for r in "abcde"] == ["succeeded", "failed", "succeeded", "cancelled", "cancelled"]
    for ref in "de":
        error = steps[ref]["error"]
        assert error["type"] == "UpstreamFailed"
        assert error["upstream_task_id"] == created["tasks"]["b"]
        assert error["upstream_ref"] == "b"
        assert steps[ref]["attempt"] == 0  # it never ran


async def test_a_plain_submit_waits_for_the_tasks_it_depends_on(api: httpx.AsyncClient) -> None:
    first = (await api.post("/api/v1/tasks", json={"task_type": "e2e.step", "payload": {"name": "one"}})).json()
    second = (
        await api.post(
            "/api/v1/tasks", json={"task_type": "e2e.step", "payload": {"name": "two"}, "depends_on": [first["id"]]}
        )
    ).json()
    deadline = time.monotonic() + 20
    while (task := (await api.get(f"/api/v1/tasks/{second['id']}")).json())["status"] != "succeeded":
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.1)
    assert task["result"]["parents"] == {first["id"]: {"name": "one", "parents": {}}}


async def test_the_client_and_the_cli_drive_workflows(stack: Stack, tmp_path: Path) -> None:
    with Client(stack.url, api_key=api_key(stack)) as client:
        created = client.submit_workflow("via-client", [step("a"), step("b", "a")])
        assert set(created.tasks) == {"a", "b"}
        after_b = [created.tasks["b"]]
        child = client.submit("e2e.step", {"name": "after"}, depends_on=after_b, wait=True, wait_timeout=30)
        assert child.status is TaskStatus.SUCCEEDED
        assert child.depends_on == [created.tasks["b"]]
        workflow = client.workflow(created.id)
        assert workflow.status == "succeeded"
        assert workflow.finished
        assert [s.ref for s in workflow.steps or []] == ["a", "b"]
        assert created.id in [w.id for w in client.workflows(limit=100).items]
        assert {t.ref for t in client.list(workflow_id=created.id).items} == {"a", "b"}

        spec = tmp_path / "flow.json"
        later = {**step("x"), "delay_seconds": 30}
        spec.write_bytes(orjson.dumps({"name": "via-cli", "tasks": [later, step("y", "x")]}))
        submitted = as_json(run(stack, "--json", "workflow", "submit", str(spec)))
        got = run(stack, "workflows", "get", submitted["id"])
        assert got.returncode == 0, got
        assert "via-cli" in got.stdout
        assert "blocked" in got.stdout
        cancelled = as_json(run(stack, "workflows", "cancel", submitted["id"], "--json"))
        assert cancelled["status"] == "cancelled"
        assert cancelled["counts"]["cancelled"] == 2
        listed = as_json(run(stack, "workflows", "list", "--json"))
        assert submitted["id"] in [w["id"] for w in listed]
        assert client.workflow(submitted["id"]).status == "cancelled"
    bad = run(stack, "workflow", "submit", str(tmp_path / "missing.json"))
    assert bad.returncode == 2, bad
