"""POST/GET /api/v1/workflows and depends_on on submit: a bad graph or a bad step is a 422 naming
the step, and nothing is stored; a good one is stored whole, its roots queued, the rest blocked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.conftest import TEST_API_KEY
from tests.integration.test_api import PROBLEM, make_client  # noqa: F401 - the fixture
from tests.integration.test_dashboard import login, ui  # noqa: F401 - the fixture

WORKFLOWS = "/api/v1/workflows"


@pytest.fixture
async def api(make_client: Any, settings: Any, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    client: httpx.AsyncClient = await make_client(settings)
    yield client
    await pool.execute("TRUNCATE workflows, task_dependencies")


def step(ref: str, *depends_on: str, **extra: Any) -> dict[str, Any]:
    return {"ref": ref, "task_type": "test", "payload": {"message": ref}, "depends_on": list(depends_on), **extra}


async def stored(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM workflows) AS w,
                  (SELECT count(*) FROM task_dependencies) AS d"""
    )
    return row["t"], row["w"], row["d"]


def fields_of(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        pytest.param([step("a"), step("b", "a", "nope")], {"tasks.1.depends_on.1"}, id="unknown-ref"),
        pytest.param([step("a"), step("a")], {"tasks.1.ref"}, id="duplicate-ref"),
        pytest.param([step("a", "a")], {"tasks.0.depends_on.0"}, id="self-loop"),
        pytest.param(
            [step("a"), step("b", "a", "c"), step("c", "d"), step("d", "b")],
            {"tasks.1.depends_on", "tasks.2.depends_on", "tasks.3.depends_on"},
            id="cycle",
        ),
        pytest.param(
            [step("a"), {**step("b", "a"), "payload": {"message": 5}}], {"tasks.1.payload.message"}, id="bad-payload"
        ),
        pytest.param([step("a"), {**step("b", "a"), "task_type": "nope"}], {"tasks.1.task_type"}, id="unknown-type"),
        pytest.param([step("a"), step("b c", "a")], {"tasks.1.ref"}, id="bad-ref"),
        pytest.param([step("a"), step("b", "a", priority=99)], {"tasks.1.priority"}, id="bad-option"),
    ],
)
async def test_a_bad_graph_or_step_is_422_naming_the_step_and_stores_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, steps: list[dict[str, Any]], named: set[str]
) -> None:
    response = await api.post(WORKFLOWS, json={"name": "bad", "tasks": steps})
    assert fields_of(response) == named, response.json()["errors"]
    assert await stored(pool) == (0, 0, 0)


async def test_a_cycle_error_spells_the_cycle(api: httpx.AsyncClient) -> None:
    response = await api.post(WORKFLOWS, json={"name": "loop", "tasks": [step("a", "b"), step("b", "a")]})
    messages = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert messages["tasks.0.depends_on"] == "is a cycle: a -> b -> a"


async def test_more_than_1000_steps_is_422_and_stores_nothing(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 1001)]
    assert fields_of(await api.post(WORKFLOWS, json={"name": "huge", "tasks": steps})) == {"tasks"}
    assert await stored(pool) == (0, 0, 0)
    # 1,000 is allowed (and its body is not refused as too large)
    response = await api.post(WORKFLOWS, json={"name": "big", "tasks": steps[:1000]})
    assert response.status_code == 202, response.text
    assert await stored(pool) == (1000, 1, 999)


async def test_a_workflow_is_stored_whole_and_readable(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = {"name": "diamond", "tasks": [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]}
    response = await api.post(WORKFLOWS, json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    assert set(created["tasks"]) == {"a", "b", "c", "d"}
    assert response.headers["Location"] == f"{WORKFLOWS}/{created['id']}"

    workflow = (await api.get(f"{WORKFLOWS}/{created['id']}")).json()
    assert workflow["name"] == "diamond"
    assert workflow["status"] == "running"
    assert workflow["counts"]["queued"] == 1
    assert workflow["counts"]["blocked"] == 3
    steps = {s["ref"]: s for s in workflow["steps"]}
    assert steps["d"]["depends_on"] == ["b", "c"]
    assert steps["d"]["status"] == "blocked"
    assert steps["a"]["task_id"] == created["tasks"]["a"]

    task = (await api.get(f"/api/v1/tasks/{created['tasks']['d']}")).json()
    assert task["workflow_id"] == created["id"]
    assert task["ref"] == "d"
    assert set(task["depends_on"]) == {created["tasks"]["b"], created["tasks"]["c"]}
    listed = (await api.get("/api/v1/tasks", params={"workflow_id": created["id"]})).json()
    assert {t["ref"] for t in listed["items"]} == {"a", "b", "c", "d"}
    page = (await api.get(WORKFLOWS)).json()
    assert [w["id"] for w in page["items"]] == [created["id"]]
    assert page["items"][0]["steps"] is None

    cancelled = (await api.post(f"{WORKFLOWS}/{created['id']}/cancel")).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["counts"]["cancelled"] == 4


async def test_an_unknown_workflow_is_404(api: httpx.AsyncClient) -> None:
    for response in (await api.get(f"{WORKFLOWS}/{uuid4()}"), await api.post(f"{WORKFLOWS}/{uuid4()}/cancel")):
        assert response.status_code == 404
        assert response.json()["type"].endswith("workflow-not-found")


async def test_depends_on_a_plain_submit(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    parent = (await api.post("/api/v1/tasks", json={"task_type": "test", "payload": {"message": "p"}})).json()
    response = await api.post(
        "/api/v1/tasks", json={"task_type": "test", "payload": {"message": "c"}, "depends_on": [parent["id"]]}
    )
    assert response.status_code == 202, response.text
    child = response.json()
    assert child["status"] == "blocked"
    assert child["depends_on"] == [parent["id"]]
    assert child["workflow_id"] is None

    before = await stored(pool)
    unknown = await api.post(
        "/api/v1/tasks", json={"task_type": "test", "payload": {"message": "c"}, "depends_on": [str(uuid4())]}
    )
    assert fields_of(unknown) == {"depends_on.0"}
    batch = await api.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"task_type": "test", "payload": {"message": "c"}, "depends_on": [parent["id"]]}]},
    )
    assert fields_of(batch) == {"tasks.0.depends_on"}
    assert await stored(pool) == before


async def test_the_dashboard_draws_a_workflow_and_the_task_page_links_it(
    api: httpx.AsyncClient,
    ui: httpx.AsyncClient,  # noqa: F811
) -> None:
    body = {"name": "drawn", "tasks": [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]}
    created = (await api.post(WORKFLOWS, json=body)).json()
    await login(ui, TEST_API_KEY)
    page = await ui.get(f"/ui/workflows/{created['id']}")
    assert page.status_code == 200, page.text[:300]
    assert page.text.count('class="node node-') == 4
    assert page.text.count('class="edge"') == 4
    assert 'data-step="d" data-status="blocked"' in page.text
    assert 'data-finished="false"' in page.text
    # a -> column 0, b and c -> column 1, d -> column 2: d is right of b and c
    node = r'data-step="(\w)" data-status="\w+">\s*<rect class="[^"]+" x="(\d+)"'
    xs = {m[0]: int(m[1]) for m in re.findall(node, page.text)}
    assert xs["a"] < xs["b"] == xs["c"] < xs["d"]
    fragment = await ui.get(f"/ui/workflows/{created['id']}?fragment=true")
    assert "<html" not in fragment.text
    assert 'id="workflow-status"' in fragment.text
    listing = await ui.get("/ui/workflows")
    assert f"/ui/workflows/{created['id']}" in listing.text
    task = await ui.get(f"/ui/tasks/{created['tasks']['d']}")
    assert f'href="/ui/workflows/{created["id"]}"' in task.text
    missing = await ui.get(f"/ui/workflows/{uuid4()}")
    assert missing.status_code == 404
