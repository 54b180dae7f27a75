from __future__ import annotations

import threading
from uuid import uuid4

import pytest
from pydantic import BaseModel

from taskcore.errors import HandlerExit, TaskValidationError
from taskcore.registry import TaskContext, TaskRegistry, load_registry


class Point(BaseModel):
    x: int
    y: int = 0


CTX = TaskContext(task_id=uuid4(), task_type="t", attempt=2, max_retries=3)


def test_registers_async_handler_and_infers_the_payload_model() -> None:
    registry = TaskRegistry()

    @registry.task("add")
    async def add(payload: Point) -> int:
        """Add the coordinates.

        More text that is not part of the summary."""
        return payload.x + payload.y

    spec = registry.get("add")
    assert spec.payload_model is Point
    assert spec.description == "Add the coordinates."
    assert spec.json_schema()["required"] == ["x"]
    assert "add" in registry
    assert [t.name for t in registry] == ["add"]


async def test_handler_may_take_the_context() -> None:
    registry = TaskRegistry()

    @registry.task("attempt")
    async def attempt(payload: Point, ctx: TaskContext) -> int:
        return ctx.attempt

    spec = registry.get("attempt")
    assert await spec.run(spec.parse({"x": 1}), CTX) == 2


async def test_sync_handlers_run_off_the_event_loop() -> None:
    registry = TaskRegistry()

    @registry.task("where")
    def where(payload: Point) -> str:
        return threading.current_thread().name

    spec = registry.get("where")
    assert await spec.run(spec.parse({"x": 1}), CTX) != threading.current_thread().name


def test_parse_names_each_bad_field() -> None:
    registry = TaskRegistry()
    registry.add("p", _point_handler)
    with pytest.raises(TaskValidationError) as err:
        registry.get("p").parse({"x": "nope", "y": []})
    assert {e["field"] for e in err.value.errors} == {"payload.x", "payload.y"}


def test_unknown_type_lists_the_known_ones() -> None:
    registry = TaskRegistry()
    registry.add("p", _point_handler)
    with pytest.raises(TaskValidationError) as err:
        registry.get("q")
    assert err.value.errors[0]["field"] == "task_type"
    assert "p" in err.value.errors[0]["message"]


def test_rejects_handlers_without_a_pydantic_payload() -> None:
    registry = TaskRegistry()

    async def untyped(payload):  # type: ignore[no-untyped-def]
        return None

    async def too_many(payload: Point, ctx: TaskContext, extra: int) -> None:
        return None

    with pytest.raises(TypeError):
        registry.add("untyped", untyped)
    with pytest.raises(TypeError):
        registry.add("too_many", too_many)


def test_a_name_cannot_be_taken_twice() -> None:
    registry = TaskRegistry()
    registry.add("p", _point_handler)
    registry.add("p", _point_handler)  # re-import of the same module is harmless

    async def other(payload: Point) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        registry.add("p", other)


def test_load_registry_has_the_builtin_types() -> None:
    assert {"test", "sleep", "fail", "cpu"} <= {t.name for t in load_registry([])}


async def _point_handler(payload: Point) -> int:
    return payload.x


@pytest.mark.parametrize("blocking", [False, True], ids=["async", "in a thread"])
async def test_sys_exit_in_a_handler_ends_the_task_not_the_process(blocking: bool) -> None:
    registry = TaskRegistry()

    def quit_sync(payload: Point) -> None:
        raise SystemExit(payload.x)

    async def quit_async(payload: Point) -> None:
        raise SystemExit(payload.x)

    registry.add("quit", quit_sync if blocking else quit_async)
    spec = registry.get("quit")
    with pytest.raises(HandlerExit, match=r"SystemExit\(7\)"):
        await spec.run(Point(x=7), CTX)
