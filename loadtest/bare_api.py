"""The front door's baseline: a bare FastAPI endpoint doing one INSERT and one enqueue per submit.

``POST /api/v1/tasks`` parses the JSON body (a ``task_type`` string and a ``payload`` object, else
422), stores one row in the same ``tasks`` table with the columns a valid row needs (one INSERT
through an asyncpg pool sized like the API's), adds the task's arq job with the same single
enqueue TaskFlow uses (``taskcore.queue.TaskQueue.enqueue``: one Lua call), and answers 202 with
the id. No validation against a registry, no idempotency, no metrics, no middleware: what
"one INSERT and one enqueue behind FastAPI" costs, served exactly as ``taskflow-api`` is served
(uvicorn, uvloop, httptools, no access log). ``GET /ready`` answers 200 once both stores answer.

    python -m loadtest.bare_api --port 8100   # env: BARE_DATABASE_URL, BARE_REDIS_URL, BARE_QUEUE
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from taskcore.queue import TaskQueue, connect

INSERT = """INSERT INTO tasks (id, task_type, payload, status, max_retries, timeout_seconds)
    VALUES ($1, $2, $3::text::jsonb, 'queued', 3, 300)"""
POOL_SIZE = 10  # the API's default TASKFLOW_DB_POOL_MAX_SIZE


class Stores:
    pool: asyncpg.Pool
    queue: TaskQueue


def create_app(database_url: str, redis_url: str, queue_name: str) -> FastAPI:
    stores = Stores()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stores.pool = await asyncpg.create_pool(database_url, min_size=1, max_size=POOL_SIZE)
        redis = connect(redis_url, queue_name=queue_name)
        stores.queue = TaskQueue(redis)
        try:
            yield
        finally:
            await redis.aclose(close_connection_pool=True)
            await stores.pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/api/v1/tasks")
    async def submit(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            task_type, payload = body["task_type"], body["payload"]
            if not isinstance(task_type, str) or not isinstance(payload, dict):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Response(b'{"detail": "task_type and payload required"}', 422, media_type="application/json")
        task_id = uuid.uuid4()
        await stores.pool.execute(INSERT, task_id, task_type, orjson.dumps(payload).decode())
        await stores.queue.enqueue(task_id, run_at=datetime.now(UTC))
        return Response(orjson.dumps({"id": str(task_id)}), 202, media_type="application/json")

    @app.get("/ready")
    async def ready() -> Response:
        await stores.pool.fetchval("SELECT 1 FROM tasks LIMIT 0")
        await stores.queue.ping()
        return Response(b"{}", 200, media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bare_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = create_app(os.environ["BARE_DATABASE_URL"], os.environ["BARE_REDIS_URL"], os.environ["BARE_QUEUE"])
    # As taskflow_api.main serves the real API.
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
