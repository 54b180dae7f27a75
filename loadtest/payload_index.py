"""The payload containment filter at a million tasks: query time with and without the GIN index
(jsonb_path_ops), the index's size, and its cost on batch-insert throughput.

    python -m loadtest.payload_index --tasks 1000000

Works in a database of its own (``taskflow_payload_<tag>``), dropped afterwards, also on Ctrl-C.
Prints a table; the figures in docs/performance.md ("Payload filter") come from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from loadtest.procs import ADMIN_DATABASE_URL
from taskcore.domain import NewTask
from taskcore.store import TaskRepository, create_pool, migrate

# customer_id takes CUSTOMERS values: customer 42 owns tasks/CUSTOMERS of them (20 at a million);
# region takes five, each a fifth of the table (the filter a GIN index cannot make selective).
CUSTOMERS = 50_000
FILL = f"""INSERT INTO tasks (id, task_type, payload, status, priority, max_retries, timeout_seconds,
                              created_at, updated_at, run_at, finished_at)
    SELECT gen_random_uuid(), (ARRAY['email', 'resize', 'report'])[1 + i % 3],
           jsonb_build_object('customer_id', i % {CUSTOMERS}, 'order', i,
                              'region', (ARRAY['eu', 'us', 'apac', 'latam', 'africa'])[1 + i % 5],
                              'note', md5(i::text)),
           CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 0, 3, 300,
           now() - make_interval(secs => $1 - i), now() - make_interval(secs => $1 - i),
           now() - make_interval(secs => $1 - i), now() - make_interval(secs => $1 - i)
      FROM generate_series(1, $1) AS i"""

LIST = """SELECT id FROM tasks WHERE payload @> $1::jsonb ORDER BY created_at DESC, id DESC LIMIT 51"""
LIST_FAILED = """SELECT id FROM tasks WHERE status = 'failed' AND payload @> $1::jsonb
                 ORDER BY created_at DESC, id DESC LIMIT 51"""
COUNT = """SELECT count(*) FROM tasks WHERE payload @> $1::jsonb"""
QUERIES = [
    ("list, customer_id = 42 (20 rows)", LIST, '{"customer_id": 42}'),
    ("list failed, customer_id = 42 (none of its 20 failed)", LIST_FAILED, '{"customer_id": 42}'),
    ("count, customer_id = 42 (bulk dry run)", COUNT, '{"customer_id": 42}'),
    ("list, region = eu (a fifth)", LIST, '{"region": "eu"}'),
    ("count, region = eu", COUNT, '{"region": "eu"}'),
]


def _url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_DATABASE_URL)._replace(path=f"/{name}"))


async def _explain(conn: asyncpg.Connection, sql: str, arg: str, runs: int) -> tuple[float, str]:
    """Best execution time (ms) of ``runs`` EXPLAIN ANALYZE runs, and the plan's top node."""
    times = []
    top = ""
    for _ in range(runs):
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", arg)
        doc = plan if isinstance(plan, list) else json.loads(plan)
        times.append(doc[0]["Execution Time"])
        node = doc[0]["Plan"]
        while node.get("Plans") and node["Node Type"] in {"Limit", "Aggregate", "Sort", "Gather Merge", "Gather"}:
            node = node["Plans"][0]
        top = node["Node Type"] + (f" on {node['Index Name']}" if "Index Name" in node else "")
        top += f", {doc[0]['Plan']['Actual Rows']} row(s) out"
    return min(times), top


def _task(i: int) -> NewTask:
    return NewTask(
        id=uuid.uuid4(),
        task_type="email",
        payload={"customer_id": i % CUSTOMERS, "order": i, "region": "eu", "note": "x" * 32},
        priority=0,
        max_retries=3,
        timeout_seconds=300,
        run_at=None,
    )


async def _insert_rate(repo: TaskRepository, batches: int, size: int) -> float:
    """Tasks per second stored by ``batches`` sequential insert_many calls of ``size`` tasks."""
    start = time.perf_counter()
    for b in range(batches):
        await repo.insert_many([_task(b * size + i) for i in range(size)])
    return batches * size / (time.perf_counter() - start)


async def measure(tasks: int, runs: int, batches: int, size: int, rounds: int) -> None:
    name = f"taskflow_payload_{uuid.uuid4().hex[:8]}"
    url = _url(name)
    await migrate(url, create_database=True)
    try:
        conn = await asyncpg.connect(url)
        pool = await create_pool(url, max_size=2)
        try:
            await conn.execute("DROP INDEX tasks_payload_idx")
            started = time.perf_counter()
            await conn.execute(FILL, tasks)
            print(f"filled {tasks:,} tasks in {time.perf_counter() - started:.1f} s")
            await conn.execute("VACUUM ANALYZE tasks")
            rows = [(label, *await _explain(conn, sql, arg, runs)) for label, sql, arg in QUERIES]
            started = time.perf_counter()
            await conn.execute("CREATE INDEX tasks_payload_idx ON tasks USING gin (payload jsonb_path_ops)")
            built = time.perf_counter() - started
            await conn.execute("ANALYZE tasks")
            size_index = await conn.fetchval("SELECT pg_relation_size('tasks_payload_idx')")
            size_table = await conn.fetchval("SELECT pg_relation_size('tasks')")
            with_index = [await _explain(conn, sql, arg, runs) for _, sql, arg in QUERIES]
            mib = 2**20
            print(f"\nindex built in {built:.1f} s; size {size_index / mib:.1f} MiB (table {size_table / mib:.0f} MiB)")
            print("\n| query | no index (ms) | plan | with index (ms) | plan |\n|---|---|---|---|---|")
            for (label, t0, p0), (t1, p1) in zip(rows, with_index, strict=True):
                print(f"| {label} | {t0:.1f} | {p0} | {t1:.2f} | {p1} |")
            repo = TaskRepository(pool)
            rates: dict[str, list[float]] = {"with": [], "without": []}
            for _ in range(rounds):  # alternate, so that a noisy neighbour hits both
                rates["with"].append(await _insert_rate(repo, batches, size))
                await conn.execute("DROP INDEX tasks_payload_idx")
                rates["without"].append(await _insert_rate(repo, batches, size))
                await conn.execute("CREATE INDEX tasks_payload_idx ON tasks USING gin (payload jsonb_path_ops)")
            with_rate, without_rate = statistics.median(rates["with"]), statistics.median(rates["without"])
            print(
                f"\ninsert_many, {batches} x {size} tasks: without index {without_rate:,.0f} tasks/s "
                f"(runs {', '.join(f'{r:,.0f}' for r in rates['without'])}), with {with_rate:,.0f} tasks/s "
                f"(runs {', '.join(f'{r:,.0f}' for r in rates['with'])}): {with_rate / without_rate:.2f}x"
            )
        finally:
            await pool.close()
            await conn.close()
    finally:
        admin = await asyncpg.connect(ADMIN_DATABASE_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="EXPLAIN ANALYZE runs per query (best kept)")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="insert runs with and without the index, alternated")
    args = parser.parse_args()
    asyncio.run(measure(args.tasks, args.runs, args.batches, args.batch_size, args.rounds))


if __name__ == "__main__":
    main()
