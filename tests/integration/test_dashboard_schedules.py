"""The dashboard's schedules page over the real PostgreSQL: next and latest runs, pause/resume and
run-now buttons for admins only, the task list filtered by schedule."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from taskcore.scheduler import ScheduleInput, ScheduleService
from taskcore.schedules import CatchUp
from taskcore.service import TaskRequest, TaskService
from taskcore.store.schedules import ScheduleRepository
from tests.conftest import TEST_API_KEY
from tests.integration.test_dashboard import READ_ONLY_KEY, csrf_of, login, ui  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
async def schedule_id(service: TaskService, pool: asyncpg.Pool) -> AsyncIterator[str]:
    schedules = ScheduleService(service=service, repo=ScheduleRepository(pool))
    made = await schedules.create(
        ScheduleInput(
            name="ui-nightly",
            task=TaskRequest(task_type="test", payload={"message": "n"}),
            cron="30 2 * * *",
            timezone="Europe/Paris",
            catch_up=CatchUp.ALL,
        )
    )
    yield str(made.id)
    await pool.execute("TRUNCATE schedules")


async def test_schedules_page_and_its_buttons(ui: httpx.AsyncClient, schedule_id: str) -> None:  # noqa: F811
    await login(ui, TEST_API_KEY)
    page = await ui.get("/ui/schedules")
    assert page.status_code == 200
    assert "ui-nightly" in page.text
    assert "Europe/Paris" in page.text
    assert page.text.count(" UTC<br>") == 3  # the next three runs
    assert "none yet" in page.text
    token = csrf_of(page)
    paused = await ui.post(f"/ui/schedules/{schedule_id}/pause", data={"csrf": token})
    assert paused.status_code == 303
    page = await ui.get("/ui/schedules")
    assert "Resume" in page.text
    run = await ui.post(f"/ui/schedules/{schedule_id}/trigger", data={"csrf": csrf_of(page)})
    assert run.status_code == 303
    assert run.headers["location"].startswith("/ui/tasks/")
    page = await ui.get("/ui/schedules")
    assert "status-queued" in page.text
    listed = await ui.get(f"/ui/tasks?schedule_id={schedule_id}")
    assert run.headers["location"].removeprefix("/ui/tasks/") in listed.text
    refused = await ui.post(f"/ui/schedules/{schedule_id}/resume", data={"csrf": "forged"})
    assert refused.status_code == 403


async def test_a_reader_sees_schedules_but_no_buttons(ui: httpx.AsyncClient, schedule_id: str) -> None:  # noqa: F811
    await login(ui, READ_ONLY_KEY)
    page = await ui.get("/ui/schedules")
    assert page.status_code == 200
    assert "ui-nightly" in page.text
    assert "Run now" not in page.text
    assert (await ui.post(f"/ui/schedules/{schedule_id}/trigger", data={"csrf": csrf_of(page)})).status_code == 403
