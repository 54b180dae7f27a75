"""Schedules (``/api/v1/schedules``): the models, the calls, and the methods both clients get."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import Field

from taskflow_client._base import API, Call, parse
from taskflow_client._models import Task, _Model

ScheduleId = uuid.UUID | str


class LastRun(_Model):
    task_id: uuid.UUID
    scheduled_for: datetime
    status: str


class Schedule(_Model):
    id: uuid.UUID
    name: str
    cron: str | None = None
    every_seconds: int | None = None
    timezone: str = "UTC"
    task: dict[str, Any]
    overlap: str
    catch_up: str
    paused: bool
    next_runs: list[datetime]
    last_slot_at: datetime | None = None
    last_runs: list[LastRun] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class ScheduleList(_Model):
    items: list[Schedule]


def schedule_path(schedule_id: ScheduleId, suffix: str = "") -> str:
    return f"{API}/schedules/{uuid.UUID(str(schedule_id))}{suffix}"


def task_body(
    task_type: str,
    payload: dict[str, Any],
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_retries: int | None = None,
    timeout_seconds: int | None = None,
    limit_keys: Sequence[str] | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """A schedule's ``task``: what each run is (``callback_url``: each run is POSTed there when it ends)."""
    body: dict[str, Any] = {"task_type": task_type, "payload": payload}
    options = {
        "queue": queue,
        "priority": priority,
        "max_retries": max_retries,
        "timeout_seconds": timeout_seconds,
        "limit_keys": list(limit_keys) if limit_keys is not None else None,
        "callback_url": callback_url,
    }
    body.update({k: v for k, v in options.items() if v is not None})
    return body


def create_call(
    name: str,
    task: dict[str, Any],
    *,
    cron: str | None,
    every_seconds: int | None,
    timezone: str | None,
    overlap: str | None,
    catch_up: str | None,
    paused: bool | None,
) -> Call:
    body: dict[str, Any] = {"name": name, "task": task}
    options = {
        "cron": cron,
        "every_seconds": every_seconds,
        "timezone": timezone,
        "overlap": overlap,
        "catch_up": catch_up,
        "paused": paused,
    }
    body.update({k: v for k, v in options.items() if v is not None})
    return Call("POST", f"{API}/schedules", json=body)


class SchedulesMixin:
    """Schedule methods of ``Client``."""

    _send: Callable[[Call], httpx.Response]

    def create_schedule(
        self,
        name: str,
        task: dict[str, Any],
        *,
        cron: str | None = None,
        every_seconds: int | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catch_up: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        """Create a schedule; ``task`` is built with ``task_body(task_type, payload, ...)`` (or a dict)."""
        call = create_call(
            name,
            task,
            cron=cron,
            every_seconds=every_seconds,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            paused=paused,
        )
        return parse(self._send(call), Schedule)

    def list_schedules(self) -> builtins.list[Schedule]:
        return parse(self._send(Call("GET", f"{API}/schedules")), ScheduleList).items

    def get_schedule(self, schedule_id: ScheduleId) -> Schedule:
        return parse(self._send(Call("GET", schedule_path(schedule_id))), Schedule)

    def update_schedule(self, schedule_id: ScheduleId, **changes: Any) -> Schedule:
        """Change only the fields given (``cron=`` replaces ``every_seconds`` and the reverse)."""
        return parse(self._send(Call("PATCH", schedule_path(schedule_id), json=changes)), Schedule)

    def delete_schedule(self, schedule_id: ScheduleId) -> None:
        self._send(Call("DELETE", schedule_path(schedule_id)))

    def pause_schedule(self, schedule_id: ScheduleId) -> Schedule:
        return parse(self._send(Call("POST", schedule_path(schedule_id, "/pause"))), Schedule)

    def resume_schedule(self, schedule_id: ScheduleId) -> Schedule:
        return parse(self._send(Call("POST", schedule_path(schedule_id, "/resume"))), Schedule)

    def trigger_schedule(self, schedule_id: ScheduleId) -> Task:
        """Run the schedule's task now (outside its slots); the task it stored."""
        return parse(self._send(Call("POST", schedule_path(schedule_id, "/trigger"))), Task)


class AsyncSchedulesMixin:
    """Schedule methods of ``AsyncClient`` (the same as ``Client``'s, awaited)."""

    _send: Callable[[Call], Awaitable[httpx.Response]]

    async def create_schedule(
        self,
        name: str,
        task: dict[str, Any],
        *,
        cron: str | None = None,
        every_seconds: int | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catch_up: str | None = None,
        paused: bool | None = None,
    ) -> Schedule:
        call = create_call(
            name,
            task,
            cron=cron,
            every_seconds=every_seconds,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            paused=paused,
        )
        return parse(await self._send(call), Schedule)

    async def list_schedules(self) -> builtins.list[Schedule]:
        return parse(await self._send(Call("GET", f"{API}/schedules")), ScheduleList).items

    async def get_schedule(self, schedule_id: ScheduleId) -> Schedule:
        return parse(await self._send(Call("GET", schedule_path(schedule_id))), Schedule)

    async def update_schedule(self, schedule_id: ScheduleId, **changes: Any) -> Schedule:
        return parse(await self._send(Call("PATCH", schedule_path(schedule_id), json=changes)), Schedule)

    async def delete_schedule(self, schedule_id: ScheduleId) -> None:
        await self._send(Call("DELETE", schedule_path(schedule_id)))

    async def pause_schedule(self, schedule_id: ScheduleId) -> Schedule:
        return parse(await self._send(Call("POST", schedule_path(schedule_id, "/pause"))), Schedule)

    async def resume_schedule(self, schedule_id: ScheduleId) -> Schedule:
        return parse(await self._send(Call("POST", schedule_path(schedule_id, "/resume"))), Schedule)

    async def trigger_schedule(self, schedule_id: ScheduleId) -> Task:
        return parse(await self._send(Call("POST", schedule_path(schedule_id, "/trigger"))), Task)
