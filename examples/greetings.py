"""An example of your own task type: put a module like this on PYTHONPATH and name it in
TASKFLOW_TASK_MODULES (comma-separated) for both the API and the worker."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskcore import TaskContext, task


class Greeting(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    shout: bool = False


@task("greet")
async def greet(payload: Greeting, ctx: TaskContext) -> dict[str, str | int]:
    """Greet someone by name."""
    text = f"Hello, {payload.name}!"
    return {"greeting": text.upper() if payload.shout else text, "attempt": ctx.attempt}
