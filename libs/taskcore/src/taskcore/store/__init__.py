"""PostgreSQL: the pool, the migrations and the task repository."""

from taskcore.store._pool import create_pool, open_leader_pool, open_pool
from taskcore.store.migrate import migrate
from taskcore.store.repository import DueTask, ListFilter, Page, Recovered, TaskRepository

__all__ = [
    "DueTask",
    "ListFilter",
    "Page",
    "Recovered",
    "TaskRepository",
    "create_pool",
    "migrate",
    "open_leader_pool",
    "open_pool",
]
