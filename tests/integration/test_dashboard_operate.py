"""The dashboard for a busy day, in process with auth on: the new list filters, "Retry all N
matching" with its confirmation and progress page (admin only), a task's progress, and the
overview's last hour by task type."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from taskcore.progress import encode_progress
from taskcore.store import TaskRepository
from taskcore.store.progress import ProgressStore
from tests.conftest import TEST_API_KEY
from tests.integration.conftest import stored
from tests.integration.test_dashboard import READ_ONLY_KEY, csrf_of, login, ui  # noqa: F401 - the ui fixture

WRITER_ONLY = "not-admin"


@pytest.fixture(autouse=True)
async def _no_bulk_actions(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("TRUNCATE bulk_actions CASCADE")


async def failed(repo: TaskRepository, **kw: object) -> str:
    task = await stored(repo, **kw)
    await repo.pool.execute(
        """UPDATE tasks SET status = 'failed', attempt = 1, finished_at = now(), admitted = true,
               error = '{"type": "Boom", "message": "x"}' WHERE id = $1""",
        task.id,
    )
    return str(task.id)


async def test_the_list_filters_by_queue_limit_key_and_payload_field(
    ui: httpx.AsyncClient,  # noqa: F811
    repo: TaskRepository,
) -> None:
    await login(ui, TEST_API_KEY)
    mine = await stored(repo, payload={"message": "a", "customer_id": 42}, queue="emails", limit_keys=("tenant:7",))
    other = await stored(repo, payload={"message": "b", "customer_id": 7})
    for query in (
        "payload=customer_id+%3D+42",
        "payload=%7B%22customer_id%22%3A+42%7D",
        "queue=emails",
        "limit_key=tenant:7",
    ):
        page = await ui.get(f"/ui/tasks?{query}")
        assert page.status_code == 200, query
        assert str(mine.id)[:8] in page.text, query
        assert str(other.id)[:8] not in page.text, query
    assert 'value="{&#34;customer_id&#34;:42}"' in (await ui.get("/ui/tasks?payload=customer_id+%3D+42")).text
    bad = await ui.get("/ui/tasks?payload=%5B1%5D&queue=Bad+Queue")
    assert bad.status_code == 200
    assert "Payload:" in bad.text
    assert "Queue" in bad.text


async def test_retry_all_matching_confirms_the_count_then_runs(
    ui: httpx.AsyncClient,  # noqa: F811
    repo: TaskRepository,
    pool: asyncpg.Pool,
) -> None:
    await login(ui, TEST_API_KEY)
    ids = [await failed(repo, payload={"message": "m", "customer_id": 5}) for _ in range(3)]
    await failed(repo, payload={"message": "m", "customer_id": 6})
    page = await ui.get("/ui/tasks?status=failed&payload=customer_id+%3D+5")
    assert "Retry all 3 matching" in page.text
    assert "Cancel all" not in page.text  # no failed task can be cancelled
    link = re.search(r'id="bulk-retry" href="([^"]+)"', page.text)
    assert link is not None
    confirm = await ui.get(link.group(1).replace("&amp;", "&"))
    assert confirm.status_code == 200
    assert 'id="bulk-matched">3<' in confirm.text
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 0  # a dry run only
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.text))
    fields = {k: v.replace("&#34;", '"') for k, v in fields.items()}
    started = await ui.post("/ui/bulk", data=fields)
    assert started.status_code == 303, started.text
    assert started.headers["location"].startswith("/ui/bulk/")
    shown = await ui.get(started.headers["location"])
    assert shown.status_code == 200
    assert "running" in shown.text
    assert await pool.fetchval("SELECT matched FROM bulk_actions") == 3
    assert {str(r["task_id"]) for r in await pool.fetch("SELECT task_id FROM bulk_action_items")} == set(ids)


async def test_bulk_pages_need_the_admin_scope(ui: httpx.AsyncClient, repo: TaskRepository) -> None:  # noqa: F811
    await failed(repo)
    await login(ui, READ_ONLY_KEY)
    page = await ui.get("/ui/tasks?status=failed")
    assert "Retry all" not in page.text
    assert (await ui.get("/ui/bulk/confirm?action=retry&status=failed")).status_code == 403


async def test_a_task_page_shows_its_progress(ui: httpx.AsyncClient, repo: TaskRepository) -> None:  # noqa: F811
    await login(ui, TEST_API_KEY)
    task = await stored(repo)
    claimed = await repo.claim(task.id, worker_id="w", lease_seconds=30)
    assert claimed is not None
    await ProgressStore(repo.pool).write(task.id, 1, encode_progress(0.4, "resized 40 of 100", {"done": 40}, 1))
    page = await ui.get(f"/ui/tasks/{task.id}")
    assert 'id="task-progress"' in page.text
    assert "40 %" in page.text
    assert "resized 40 of 100" in page.text


async def test_the_overview_has_the_last_hour_by_task_type(ui: httpx.AsyncClient, repo: TaskRepository) -> None:  # noqa: F811
    await login(ui, TEST_API_KEY)
    await failed(repo, task_type="sleep", payload={"seconds": 1})
    done = await stored(repo, task_type="sleep", payload={"seconds": 1})
    claimed = await repo.claim(done.id, worker_id="w", lease_seconds=30)
    assert claimed is not None
    await repo.mark_succeeded(done.id, claimed.attempt, None)
    data = (await ui.get("/ui/overview.json")).json()
    assert data["by_type"] == [
        {"task_type": "sleep", "succeeded": 1, "failed": 1, "cancelled": 0, "per_minute": 0.03, "failure_rate": 0.5}
    ]
    assert "Last hour by task type" in (await ui.get("/ui/")).text
