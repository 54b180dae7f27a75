"""The dashboard in a real browser: Playwright driving Debian's headless Chromium against the
real API and worker. Every wait is on a condition (Playwright's expect), never a fixed sleep.

Screenshots go to .taskflow/screenshots/ (git-ignored); with TASKFLOW_DOCS_SCREENSHOTS set
(scripts/docs-screenshots.sh) the representative ones are also written there for the README."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from taskflow_client import Client, Task, TaskStatus
from tests.e2e.conftest import ROOT, Stack

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("TASKFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / ".taskflow" / "screenshots"
DOCS_SHOTS = os.environ.get("TASKFLOW_DOCS_SCREENSHOTS")
LIVE = 30_000  # ms: generous, for a loaded machine; expect() returns as soon as the condition holds
expect.set_options(timeout=LIVE)


def api_key(stack: Stack) -> str | None:
    return stack.headers.get("Authorization", "").removeprefix("Bearer ") or None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed by the project's script when absent; no browser is a failure, not a skip."""
    script = ROOT / "scripts" / "ensure-chromium.sh"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the dashboard tests and could not be installed:\n{result.stderr}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    if DOCS_SHOTS:
        Path(DOCS_SHOTS).mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    # Playwright gives every launch a fresh temporary profile (user data dir) and removes it on close.
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def log_in(page: Page, stack: Stack, path: str = "/ui/") -> None:
    """Open ``path``; when auth is on, the dashboard sends us to its login page first, then back."""
    await page.goto(f"{stack.url}{path}")
    key = api_key(stack)
    if key is None:
        return
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{stack.url}{path}")


@pytest.fixture
async def page(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies), logged in to the dashboard."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(LIVE)
    opened = await context.new_page()
    if "anonymous" not in request.fixturenames:
        await log_in(opened, stack)
    yield opened
    await opened.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    await context.close()


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.url, api_key=api_key(stack)) as tf:
        yield tf


async def docs_shot(page: Page, name: str) -> None:
    if DOCS_SHOTS:
        await page.screenshot(path=str(Path(DOCS_SHOTS) / name), full_page=False)


def wait_running(client: Client, task: Task, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while client.get(task.id).status is not TaskStatus.RUNNING:
        assert time.monotonic() < deadline, f"task {task.id} did not start within {within}s"
        time.sleep(0.05)


async def test_submit_from_the_form_and_watch_it_succeed(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.url}/ui/submit")
    await page.get_by_label("Task type").select_option("sleep")
    await expect(
        page.get_by_role("spinbutton", name="Seconds", exact=True)
    ).to_be_visible()  # the form re-rendered from sleep's schema
    await page.get_by_role("spinbutton", name="Seconds", exact=True).fill("3")
    await page.get_by_role("spinbutton", name=re.compile("^Priority")).fill("4")
    await page.get_by_role("button", name="Submit", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/ui/tasks/[0-9a-f-]{36}$"))
    status = page.locator("#task-status")
    await expect(status).to_have_text(re.compile("^(queued|running)$"))  # still going when the page opened
    await expect(status).to_have_text("succeeded", timeout=LIVE)  # and the page shows it finish, no reload
    await expect(page.locator("#task-result")).to_contain_text('"slept"')
    await expect(page.get_by_text("4", exact=True)).to_be_visible()
    await docs_shot(page, "dashboard-task.png")


async def test_the_form_reports_what_the_api_refuses(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.url}/ui/submit?task_type=fail")
    await page.get_by_label("Message", exact=True).fill("x" * 1001)  # over maxLength: typed by a script, not a person
    await page.locator("#p-message").evaluate("node => node.removeAttribute('maxlength')")
    await page.locator("#p-message").fill("x" * 1001)
    await page.get_by_role("button", name="Submit", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("payload.message")
    await expect(page).to_have_url(re.compile(r"/ui/submit$"))


async def test_filter_the_list(page: Page, stack: Stack, client: Client) -> None:
    failed = client.submit("fail", {"times": -1}, max_retries=0, wait=True, wait_timeout=30)
    client.submit("test", {"message": "not failed"}, wait=True, wait_timeout=30)
    assert failed.status is TaskStatus.FAILED
    await page.goto(f"{stack.url}/ui/tasks")
    await page.get_by_label("failed", exact=True).check()
    await page.get_by_label("Type").select_option("fail")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=failed"))
    rows = page.locator("#task-rows tr[data-status]")
    await expect(rows.first).to_be_visible()
    assert set(await rows.evaluate_all("rows => rows.map(r => r.dataset.status)")) == {"failed"}
    await page.get_by_role("link", name=str(failed.id)[:8]).click()
    await expect(page.locator("#task-status")).to_have_text("failed")
    await expect(page.get_by_text("DeliberateFailure", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Retry")).to_be_visible()
    await page.go_back()
    await expect(rows.first).to_be_visible()
    await docs_shot(page, "dashboard-tasks.png")


async def test_cancel_a_running_task(page: Page, stack: Stack, client: Client) -> None:
    task = client.submit("sleep", {"seconds": 60})
    try:
        wait_running(client, task)
        await page.goto(f"{stack.url}/ui/tasks/{task.id}")
        await expect(page.locator("#task-status")).to_have_text("running")
        await page.get_by_role("button", name="Cancel").click()
        await expect(page.locator("#task-status")).to_have_text("cancelled")
        assert client.get(task.id).status is TaskStatus.CANCELLED
        await page.get_by_role("button", name="Retry").click()  # and run it again, from the same page
        await expect(page.locator("#task-status")).to_have_text(re.compile("^(queued|running)$"))
    finally:
        if not client.get(task.id).terminal:
            client.cancel(task.id)


async def test_overview_numbers_change(page: Page, stack: Stack, client: Client) -> None:
    await page.goto(f"{stack.url}/ui/")
    succeeded = page.locator('[data-count="succeeded"]')
    before = int(await succeeded.inner_text())
    client.submit("test", {"message": "count me"}, wait=True, wait_timeout=30)
    await page.wait_for_function(
        f"() => Number(document.querySelector('[data-count=\"succeeded\"]').textContent) > {before}", timeout=LIVE
    )
    await expect(page.locator("#chart rect.succeeded").first).to_be_visible()
    await expect(page.locator("#workers td.ok").first).to_be_visible()  # the stack's worker, heartbeat recent
    await docs_shot(page, "dashboard-overview.png")


@pytest.fixture
def anonymous() -> None:
    """Marks a test whose page starts logged out."""


async def test_login_keeps_the_key_in_a_strict_httponly_cookie(page: Page, stack: Stack, anonymous: None) -> None:
    if api_key(stack) is None:
        pytest.fail("the e2e stack runs with auth on: it should carry an API key")
    await page.goto(f"{stack.url}/ui/tasks?status=failed")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    await page.get_by_label("API key").fill("not-a-key")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That key is not valid.")
    await page.get_by_label("API key").fill(api_key(stack) or "")
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{stack.url}/ui/tasks?status=failed")  # back where we were going
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["taskflow_key"]["httpOnly"] is True
    assert cookies["taskflow_key"]["sameSite"] == "Strict"
    assert cookies["taskflow_key"]["path"] == "/ui"
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read the key or the CSRF token
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(re.compile(r"/ui/login"))
    await page.goto(f"{stack.url}/ui/")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next="))


async def test_keyboard_reaches_the_skip_link_and_navigation(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.url}/ui/tasks")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#main")).to_be_focused()
    await page.set_viewport_size({"width": 390, "height": 800})  # a phone: the table scrolls, the page does not
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


async def test_pause_and_resume_a_queue_from_the_queues_page(page: Page, stack: Stack, client: Client) -> None:
    queue = f"ui-{os.getpid()}"
    task = client.submit("test", {"message": "stranded"}, queue=queue)  # the stack's worker consumes default only
    try:
        await page.get_by_role("link", name="Queues").click()
        await expect(page).to_have_url(f"{stack.url}/ui/queues")
        await expect(page.get_by_role("alert")).to_contain_text(queue)  # due, and no live worker consumes it
        row = page.locator(f'tr[data-queue="{queue}"]')
        await row.get_by_role("button", name=f"Pause {queue}").click()
        await expect(row.locator(".badge.paused")).to_have_text("paused")
        assert client.queue(queue).paused
        await row.get_by_role("button", name=f"Resume {queue}").click()
        await expect(row.locator(".badge.paused")).to_have_count(0)
        assert not client.queue(queue).paused
    finally:
        client.resume_queue(queue)
        client.cancel(task.id)
